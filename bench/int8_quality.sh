#!/usr/bin/env bash
# int8_quality.sh: what int8 inference costs in quality, and what QAT buys (issue 14).
# For a dense model (configs/demo_dense.json) and a MoE one (configs/moe_demo.json), per
# seed: train on tinyshakespeare with the same seed and steps three ways (plain fp32; int8
# QAT of every linear layer but the head, experts included, per-token activation ranges,
# with straight-through weight steps (ste) and with learned ones (lsq)); write each run's
# int8 weights (frugal convert --quantize int8) and measure the perplexity of held-out
# text (the file's last EVAL_BYTES bytes, never trained on) with `frugal sample --eval`:
#   fp32        the plain run, fp32 inference          (the reference)
#   PTQ int8    the plain run, int8 inference          (post-training quantization)
#   STE int8    the QAT (ste) run, int8 inference      (target: within 1% of fp32)
#   LSQ int8    the QAT (lsq) run, int8 inference      (target: within 1% of fp32)
# FAKE=1 adds the QAT runs' fake-quantized fp32 forward (what training saw; slow on MoE).
# The verdict table gives each row's perplexity as mean over seeds and its ratio to the
# same seed's fp32, averaged (min..max over seeds).
# Usage: bench/int8_quality.sh [BUILD_DIR=build] [OUT_DIR=runs/int8_quality]
# Env: STEPS (default 200), SEEDS (default "1 2 3"), CONFIGS (default "demo_dense
#      moe_demo"), BATCH (8), SEQ (64), THREADS (2), EVAL_BYTES (20000), REUSE=1 (keep
#      finished runs), SUMMARY=1 (only the table of OUT_DIR/rows.txt, e.g. the rows of
#      two instances run side by side, one per config), DATA (default tinyshakespeare).
set -euo pipefail
build=${1:-build}
out=${2:-runs/int8_quality}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$build/frugal
steps=${STEPS:-200}
threads=${THREADS:-2}
evb=${EVAL_BYTES:-20000}
data=${DATA:-$root/../shared/data/tinyshakespeare.txt}
[ -x "$bin" ] || { echo "int8_quality: $bin is not built" >&2; exit 2; }
[ -f "$data" ] || { echo "int8_quality: no $data (../shared/data)" >&2; exit 2; }
mkdir -p "$out"
head -c -"$evb" "$data" > "$out/train.txt"
tail -c "$evb" "$data" > "$out/eval.txt"

ppl() { # run, extra sample flags...
  local run=$1
  shift
  "$bin" sample --run "$run" --threads "$threads" --eval "$out/eval.txt" "$@" 2>/dev/null |
    sed -n 's/^eval: .* perplexity \([0-9.]*\) .*/\1/p'
}

train() { # cfg seed mode run
  local cfg=$1 seed=$2 mode=$3 run=$4 flags=()
  [ "$mode" != fp32 ] && flags=(--qat-layers all --qat-act token --qat-quant "$mode")
  if [ "${REUSE:-0}" = 1 ] && [ -d "$run/final" ]; then
    echo "int8_quality: reusing $run"
  else
    rm -rf "$run"
    echo "int8_quality: training $cfg seed $seed ($mode, $steps steps)"
    "$bin" train --config "$root/configs/$cfg.json" --data "$out/train.txt" --tokenizer byte --out "$run" \
      --max-steps "$steps" --max-seconds 0 --threads "$threads" --seed "$seed" --batch-size "${BATCH:-8}" \
      --seq-len "${SEQ:-64}" --val-every 0 "${flags[@]}" > "$run.log" 2>&1
  fi
  "$bin" convert --quantize int8 --run "$run" --layers all > /dev/null
}

rows=$out/rows.txt
[ "${SUMMARY:-0}" = 1 ] && CONFIGS=" " # only the table of an existing rows.txt
[ "${SUMMARY:-0}" = 1 ] || : > "$rows"
for cfg in ${CONFIGS:-demo_dense moe_demo}; do
  for seed in ${SEEDS:-1 2 3}; do
    for mode in fp32 ste lsq; do
      train "$cfg" "$seed" "$mode" "$out/$cfg-s$seed-$mode"
    done
    r=$out/$cfg-s$seed
    ref=$(ppl "$r-fp32")
    echo "$cfg $seed fp32 $ref $ref" >> "$rows"
    echo "$cfg $seed PTQ_int8 $(ppl "$r-fp32" --int8) $ref" >> "$rows"
    for mode in ste lsq; do
      [ "${FAKE:-0}" = 1 ] && echo "$cfg $seed ${mode^^}_fake $(ppl "$r-$mode") $ref" >> "$rows"
      echo "$cfg $seed ${mode^^}_int8 $(ppl "$r-$mode" --int8) $ref" >> "$rows"
    done
    grep "^$cfg $seed " "$rows"
  done
done

echo
echo "== held-out perplexity ($steps steps of ${BATCH:-8}x${SEQ:-64} tokens, byte tokenizer, seeds: ${SEEDS:-1 2 3}) =="
echo "   ratio: to the same seed's fp32, mean (min..max) over seeds; target: QAT int8 at most 1% above fp32"
awk '{
  k = $1 " " $3
  if (!(k in n)) order[++m] = k
  n[k]++; p[k] += $4; r = 100 * ($4 / $5 - 1); s[k] += r
  if (!(k in lo) || r < lo[k]) lo[k] = r
  if (!(k in hi) || r > hi[k]) hi[k] = r
} END {
  printf "%-11s %-9s %10s %9s  %-16s  %s\n", "config", "row", "ppl", "vs fp32", "(min..max)", "verdict"
  for (i = 1; i <= m; i++) {
    k = order[i]; split(k, a, " "); mean = s[k] / n[k]
    v = a[2] == "fp32" || a[2] == "PTQ_int8" || a[2] !~ /_int8$/ ? "" : mean > 1 ? "WORSE than fp32 by over 1%" : mean < -1 ? "met (better than fp32)" : "met (within 1%)"
    printf "%-11s %-9s %10.4f %+8.2f%%  (%+.2f..%+.2f)  %s\n", a[1], a[2], p[k] / n[k], mean, lo[k], hi[k], v
  }
}' "$rows"
echo "int8_quality: runs, logs and rows.txt in $out"
