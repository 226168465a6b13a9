#!/usr/bin/env bash
# bench_train.sh: training tokens/s of Frugal against PyTorch and, when given, llm.c's
# train_gpt2.c CPU trainer, all in one run at the same thread count, on (a) GPT-2 124M at
# B=4 T=64 and (b) L6 C384 NH6 at B=4 T=256. Rows (issue 11): Frugal --precision fp32,
# bf16 and fp8 (fp8 when `frugal train --help` offers it); PyTorch eager fp32, compiled
# fp32, eager bf16 autocast and its fastest CPU setting (torch.compile + bf16 autocast +
# fused AdamW). Prints the ratios the issues set targets for, each from this one run:
# Frugal bf16 / fp32, Frugal bf16 / PyTorch fastest, Frugal bf16 / llm.c, and each
# Frugal row's achieved FLOP/s over the GEMM rate `frugal bench` measures in the same
# process (sgemm for fp32, the dispatched bf16 GEMM for bf16/fp8).
#
# Usage: bench/bench_train.sh [--frugal build/frugal] [--llmc PATH/train_gpt2] [--llmc-t256 PATH/train_gpt2_T256]
#                             [--iters N] [--threads N] [--configs "a b"] [--precisions "fp32 bf16 fp8"]
#                             [--torch "eager compile bf16 fastest" | none] [--quick]
# --quick: fewer rows (Frugal fp32 + bf16, PyTorch fastest only; about half the time).
# The compiled PyTorch rows take 2 warm-up steps (compilation happens in the first; the
# inductor cache in /tmp makes later runs start faster).
# llm.c is skipped when --llmc is absent. Its binary runs in a scratch directory that
# holds what it reads (gpt2_124M.bin written by `frugal convert --to-llmc` from a random
# init of the same config, and tiny-shakespeare token files in llm.c's format), so no
# llm.c download is needed; docs/PERFORMANCE.md section 1 gives the commands that build
# both binaries. Python peers: tools/setup_peers.sh (a venv in .venv, put first on PATH).
# llm.c hard-codes B=4 T=64; --llmc-t256 names a second binary built by hand with T=256
# for (b); without it (b) runs llm.c at T=64 (its faster case per token).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
frugal="$root/build/frugal"
llmc=""
llmc256=""
iters=3
threads=2
configs="a b"
precisions=""
torch_rows="eager compile bf16 fastest"
while [ $# -gt 0 ]; do
  case "$1" in
    --frugal) frugal=$2; shift 2 ;;
    --llmc) llmc=$2; shift 2 ;;
    --llmc-t256) llmc256=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --configs) configs=$2; shift 2 ;;
    --precisions) precisions=$2; shift 2 ;;
    --torch) torch_rows=$2; shift 2 ;;
    --quick) precisions="fp32 bf16"; torch_rows="fastest"; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "bench_train: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$frugal" ] || { echo "bench_train: $frugal not built" >&2; exit 2; }
torch_flags() {
  case $1 in
    eager) echo "--warmup 1" ;;
    compile) echo "--warmup 2 --compile" ;;
    bf16) echo "--warmup 1 --bf16" ;;
    fastest) echo "--warmup 2 --compile --bf16 --fused" ;;
    *) echo "bench_train: unknown PyTorch row $1 (eager compile bf16 fastest)" >&2; return 2 ;;
  esac
}
[ "$torch_rows" = none ] && torch_rows=""
for r in $torch_rows; do torch_flags "$r" >/dev/null || exit 2; done
# fp8 only where --precision lists it among its choices ("[fp32|bf16|fp8]")
has_fp8=0
"$frugal" train --help 2>&1 | grep -- '--precision ' | grep -q '\[[^]]*fp8[^]]*\]' && has_fp8=1
if [ -z "$precisions" ]; then
  precisions="fp32 bf16"
  if [ $has_fp8 = 1 ]; then precisions="$precisions fp8"
  else echo "bench_train: $frugal has no --precision fp8 (frugal train --help): fp8 rows skipped"; fi
elif [ $has_fp8 = 0 ] && [[ " $precisions " == *" fp8 "* ]]; then
  echo "bench_train: $frugal has no --precision fp8 (frugal train --help): fp8 rows skipped"
  precisions=${precisions//fp8/}
fi
have_torch=0
if [ -n "$torch_rows" ]; then
  if python3 -c "import torch" 2>/dev/null; then have_torch=1
  else echo "bench_train: torch not installed (tools/setup_peers.sh; venv first on PATH): PyTorch rows skipped"; fi
fi
export OMP_NUM_THREADS=$threads
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

field() { sed -n "s/.*$1=\([0-9.e+-]*\).*/\1/p" | tail -1; }

# F[cfg.prec] tokens/s, RS[cfg.prec] achieved/sgemm, RB[cfg.prec] achieved/bf16 GEMM,
# BG[cfg.prec] bf16 GEMM over sgemm (best shapes); T[cfg.row] PyTorch; L[cfg] llm.c
declare -A F RS RB BG T L
run_config() { # name L C NH B T
  local name=$1 nl=$2 c=$3 nh=$4 b=$5 t=$6 out p r
  for p in $precisions; do
    echo "== ($name) Frugal L=$nl C=$c NH=$nh V=50257 B=$b T=$t, $p, $threads threads =="
    out=$("$frugal" bench --layout gpt2 --n-layer "$nl" --d-model "$c" --n-head "$nh" --vocab-size 50257 \
          --max-seq-len 1024 --batch-size "$b" --seq-len "$t" --threads "$threads" --iters "$iters" --warmup-iters 1 \
          --precision "$p")
    echo "$out"
    F[$name.$p]=$(echo "$out" | grep '^bench.train ms_per_step' | field tokens_per_s)
    RS[$name.$p]=$(echo "$out" | field achieved_over_best_sgemm)
    RB[$name.$p]=$(echo "$out" | field achieved_over_best_bgemm)
    BG[$name.$p]=$(echo "$out" | field bgemm_over_sgemm)
  done
  if [ $have_torch = 1 ]; then
    for r in $torch_rows; do
      echo "== ($name) PyTorch $r =="
      # shellcheck disable=SC2046 # word splitting of the flags is wanted
      out=$(python3 "$root/tools/torch_train_bench.py" --layers "$nl" --d-model "$c" --heads "$nh" --B "$b" --T "$t" \
            --iters "$iters" --threads "$threads" $(torch_flags "$r")) || { echo "PyTorch $r failed"; out=""; }
      echo "$out"
      T[$name.$r]=$(echo "$out" | field tokens_per_s)
    done
  fi
  L[$name]=""
  if [ -n "$llmc" ]; then
    local bin=$llmc lt=64
    if [ "$t" = 256 ] && [ -n "$llmc256" ]; then bin=$llmc256; lt=256; fi
    L[$name]=$(run_llmc "$name" "$nl" "$c" "$nh" "$bin" "$lt") || L[$name]=""
    echo "llm.c ran at T=$lt"
  fi
}

# llm.c: a scratch dir with gpt2_124M.bin (our init of this config, converted) and
# dev/data/tinyshakespeare/*.bin in llm.c's token format; time its first steps.
run_llmc() {
  local name=$1 nl=$2 c=$3 nh=$4 bin=$5 lt=$6 d="$work/llmc_$1"
  mkdir -p "$d/dev/data/tinyshakespeare"
  printf '%s\n' "hello world, this is a tiny corpus for the llm.c peer run. " > "$d/text.txt"
  for _ in $(seq 1 12); do cat "$d/text.txt" "$d/text.txt" > "$d/t2" && mv "$d/t2" "$d/text.txt"; done
  "$frugal" train --layout gpt2 --n-layer "$nl" --d-model "$c" --n-head "$nh" --vocab-size 50257 --padded-vocab 50304 \
    --max-seq-len 1024 --seq-len 64 --batch-size 1 --max-steps 1 --val-every 0 --keep-best 0 --data "$d/text.txt" \
    --out "$d/run" >/dev/null
  "$frugal" convert --to-llmc "$d/gpt2_124M.bin" --run "$d/run" >/dev/null
  python3 - "$d/dev/data/tinyshakespeare" <<'PY'
import struct, sys, random
random.seed(0)
for split, n in (("train", 200000), ("val", 20000)):
    with open("%s/tiny_shakespeare_%s.bin" % (sys.argv[1], split), "wb") as f:
        hdr = [20240520, 1, n] + [0] * 253
        f.write(struct.pack("<256i", *hdr))
        f.write(struct.pack("<%dH" % n, *[random.randrange(50257) for _ in range(n)]))
PY
  local log="$d/llmc.log"
  : > "$log" # exists before the loop below reads it (the child opens it asynchronously)
  ( cd "$d" && exec timeout 900 stdbuf -oL "$bin" ) > "$log" 2>&1 &
  local pid=$! n=0
  while kill -0 $pid 2>/dev/null; do
    n=$(grep -c "took" "$log" || true)
    [ "$n" -ge $((iters + 1)) ] && break
    sleep 1
  done
  kill $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  grep "took" "$log" | sed 's/^/llmc: /' >&2
  # median step time over steps after the first (llm.c: "step N: train loss X (took Y ms)")
  grep -o "took [0-9.]* ms" "$log" | awk 'NR>1{print $2}' | sort -g | awk '{a[NR]=$1} END{if(NR) printf "%.1f\n", 4*t/(a[int((NR+1)/2)]/1000)}' t="$lt"
}

for k in $configs; do
  case $k in
    a) run_config a 12 768 12 4 64 ;;
    b) run_config b 6 384 6 4 256 ;;
    *) echo "bench_train: unknown config $k (a or b)" >&2; exit 2 ;;
  esac
done

ratio() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN{if (b > 0) printf "%.2f", a/b; else print "-"}' || echo "-"; }
echo
echo "== tokens/s (higher is better), $threads threads, median of $iters steps =="
cols=""
for p in $precisions; do cols="$cols frugal_$p"; done
[ $have_torch = 1 ] && for r in $torch_rows; do cols="$cols torch_$r"; done
[ -n "$llmc" ] && cols="$cols llm.c"
printf "%-4s" cfg; for c in $cols; do printf " %14s" "$c"; done; echo
for k in $configs; do
  printf "%-4s" "$k"
  for p in $precisions; do printf " %14s" "${F[$k.$p]:--}"; done
  [ $have_torch = 1 ] && for r in $torch_rows; do printf " %14s" "${T[$k.$r]:--}"; done
  [ -n "$llmc" ] && printf " %14s" "${L[$k]:--}"
  echo
done
echo
echo "== ratios, all from this run (target) =="
# the Frugal row the targets speak of: bf16 when measured, else the best precision run
best=bf16
[[ " $precisions " == *" bf16 "* ]] || best=$(echo "$precisions" | awk '{print $1}')
printf "%-4s %10s %10s %15s %14s %12s %11s %11s %12s\n" cfg bf16/fp32 fp8/fp32 "$best/torch_max" "$best/llm.c" \
  fp32/t_eager fp32/sgemm "$best/bgemm" bgemm/sgemm
for k in $configs; do
  tmax=""
  for r in $torch_rows; do
    v=${T[$k.$r]:-}
    [ -n "$v" ] && tmax=$(awk -v a="$v" -v b="${tmax:-0}" 'BEGIN{print (a > b) ? a : b}')
  done
  printf "%-4s %10s %10s %15s %14s %12s %11s %11s %12s\n" "$k" "$(ratio "${F[$k.bf16]:-}" "${F[$k.fp32]:-}")" \
    "$(ratio "${F[$k.fp8]:-}" "${F[$k.fp32]:-}")" "$(ratio "${F[$k.$best]:-}" "$tmax")" \
    "$(ratio "${F[$k.$best]:-}" "${L[$k]:-}")" "$(ratio "${F[$k.fp32]:-}" "${T[$k.eager]:-}")" \
    "${RS[$k.fp32]:--}" "${RB[$k.$best]:--}" "${BG[$k.$best]:--}"
done
echo "targets (issue 11): bf16/fp32 >= 1.7; bf16 / PyTorch's fastest row measured (torch_max) >= 1.3;"
echo "  bf16/llm.c >= 5 on (a); bf16 achieved FLOP/s over the bf16 GEMM rate (bgemm) >= 0.7"
echo "  (issue 2, fp32: fp32 / PyTorch eager fp32 (t_eager) >= 1.3, fp32 achieved / sgemm >= 0.7)"
echo "  (fp8 buys memory, not speed, on a CPU: no speed target)"
