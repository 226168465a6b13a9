#!/usr/bin/env bash
# parity.sh: issue 11's loss parity: the same small dense and MoE models trained on
# tinyshakespeare (GPT-2 tokenizer) in fp32, bf16 and, when `frugal train` offers it, fp8,
# same seed and data; prints each final validation loss and its relative difference
# from the fp32 run against the targets (bf16 within 1%, fp8 within 1.5%).
#
# Usage: bench/parity.sh [--frugal build/frugal] [--steps 1000] [--models "dense moe"]
#                        [--precisions "fp32 bf16 fp8"] [--threads 2] [--jobs 1] [--keep DIR]
#                        [-- extra train flags]
# Models (llama layout, vocab 50257 from ../shared/data/gpt2, B=8 T=64, lr 3e-3 cosine to
# 3e-4, warm-up 50): dense L4 C64 NH4; MoE L4 C64 NH4, first layer dense, 8 routed
# experts top-2 + 1 shared, d_expert 64. C is small because the 50304 x C head is most of
# the work at this size: a run is a few minutes on 1-2 quiet cores. The validation
# loss is over 50 batches of 8x64 tokens (12.8k of the ~30k held-out tokens), the same
# batches in every run. Run directories go to a scratch folder, removed at the end
# unless --keep names one. --jobs N runs N trainings at once (e.g. --jobs 4 --threads 1 on
# a machine shared with others); the results do not depend on it. Results:
# docs/perf/parity.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
frugal="$root/build/frugal"
steps=1000
models="dense moe"
precisions=""
threads=2
jobs=1
keep=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --frugal) frugal=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --precisions) precisions=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "parity: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$frugal" ] || { echo "parity: $frugal not built" >&2; exit 2; }
data="$root/../shared/data/tinyshakespeare.txt"
tok="$root/../shared/data/gpt2"
if [ ! -f "$data" ] || [ ! -f "$tok/encoder.json" ]; then
  echo "parity: needs $data and $tok (the shared data folder)" >&2; exit 2
fi

# fp8 runs only where --precision lists it among its choices ("[fp32|bf16|fp8]")
has_fp8=0
"$frugal" train --help 2>&1 | grep -- '--precision ' | grep -q '\[[^]]*fp8[^]]*\]' && has_fp8=1
if [ -z "$precisions" ]; then
  precisions="fp32 bf16"
  [ $has_fp8 = 1 ] && precisions="$precisions fp8"
fi
case " $precisions " in *" fp32 "*) ;; *) precisions="fp32 $precisions" ;; esac # the reference
if [ $has_fp8 = 0 ]; then
  echo "parity: $frugal has no --precision fp8 (frugal train --help); fp8 rows skipped"
  precisions=${precisions//fp8/}
fi

if [ -n "$keep" ]; then work=$keep; mkdir -p "$work"; else work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi

common=(--layout llama --n-layer 4 --d-model 64 --n-head 4 --batch-size 8 --seq-len 64
        --max-steps "$steps" --warmup-steps 50 --lr 0.003 --min-lr 0.0003 --weight-decay 0.1 --grad-clip 1.0
        --val-every $(( steps / 4 > 0 ? steps / 4 : 1 )) --val-batches 50 --log-every $(( steps / 4 > 0 ? steps / 4 : 1 ))
        --seed 1337 --threads "$threads" --keep-best 0 --tokenizer "$tok")
moe_flags=(--n-dense-layers 1 --n-expert 8 --n-expert-active 2 --n-shared-expert 1 --d-expert 64)

# one training: <work>/<model>_<prec>/ and .log; its wall seconds in .wall
run_one() { # model precision data-flags...
  local m=$1 p=$2 out="$work/$1_$2" t0 mf=()
  shift 2
  [ "$m" = moe ] && mf=("${moe_flags[@]}")
  rm -rf "$out"
  t0=$(date +%s)
  if "$frugal" train "${common[@]}" "$@" "${mf[@]}" --precision "$p" --out "$out" "${extra[@]}" > "$out.log" 2>&1; then
    echo $(( $(date +%s) - t0 )) > "$out.wall"
  else
    tail -5 "$out.log"; echo "parity: $m $p failed (log $out.log)" >&2; return 1
  fi
}
for m in $models; do
  case $m in dense|moe) ;; *) echo "parity: unknown model $m (dense or moe)" >&2; exit 2 ;; esac
done
# tokenize once (a one-step run writes the split as shards); every run reads those shards
echo "== tokenizing $(basename "$data") with the GPT-2 tokenizer =="
"$frugal" train "${common[@]}" --max-steps 1 --val-every 0 --data "$data" --out "$work/prep" > "$work/prep.log" 2>&1 ||
  { tail -5 "$work/prep.log"; echo "parity: tokenizing failed (log $work/prep.log)" >&2; exit 1; }
grep '^data:' "$work/prep.log" || true
shards=(--train-shards "$work/prep/data/train.bin" --val-shards "$work/prep/data/val.bin")
pids=()
for m in $models; do
  for p in $precisions; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    echo "== $m $p: $steps steps =="
    run_one "$m" "$p" "${shards[@]}" &
    pids+=($!)
  done
done
fail=0
for pid in "${pids[@]}"; do wait "$pid" || fail=1; done
[ $fail = 0 ] || { echo "parity: a run failed" >&2; exit 1; }

declare -A V S
for m in $models; do
  for p in $precisions; do
    out="$work/${m}_$p"
    echo "-- $m $p: validation loss by step"
    grep -o '"step": [0-9]*, "val_loss": [0-9.e+-]*' "$out/metrics.jsonl" | sed 's/"//g; s/^/  /'
    V[$m.$p]=$(grep -o '"val_loss": [0-9.e+-]*' "$out/metrics.jsonl" | tail -1 | awk '{print $2}')
    S[$m.$p]=$(cat "$out.wall")
    grep -E '^(throughput|peak fg_malloc) ' "$out.log" | sed 's/^/  /' || true
  done
done

echo
echo "== parity: final validation loss after $steps steps (same seed, data, batches) =="
printf "%-6s %-5s %10s %10s %8s %8s %6s\n" model prec val_loss vs_fp32 target verdict wall_s
fail=0
for m in $models; do
  ref=${V[$m.fp32]}
  for p in $precisions; do
    v=${V[$m.$p]}
    case $p in fp32) tgt="-" ;; bf16) tgt=1.0 ;; fp8) tgt=1.5 ;; *) tgt="-" ;; esac
    rel=$(awk -v a="$v" -v b="$ref" 'BEGIN{printf "%+.3f%%", 100 * (a - b) / b}')
    verdict="-"
    if [ "$tgt" != "-" ]; then
      verdict=$(awk -v a="$v" -v b="$ref" -v t="$tgt" 'BEGIN{r = 100 * (a - b) / b; if (r < 0) r = -r; print (r <= t) ? "ok" : "MISS"}')
      [ "$verdict" = ok ] || fail=1
      tgt="<=${tgt}%"
    fi
    printf "%-6s %-5s %10.4f %10s %8s %8s %6s\n" "$m" "$p" "$v" "$rel" "$tgt" "$verdict" "${S[$m.$p]}"
  done
done
echo "targets (issue 11): |bf16 - fp32| / fp32 <= 1%, |fp8 - fp32| / fp32 <= 1.5%"
exit $fail
