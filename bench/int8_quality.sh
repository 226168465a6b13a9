#!/usr/bin/env bash
# int8_quality.sh: what int8 inference costs in quality, and what QAT buys (issue 14).
# For the dense demo model (configs/demo.json) and the MoE one (configs/moe_demo.json):
# train it twice on tinyshakespeare with the same seed and steps, plain fp32 and with
# int8 QAT (--qat-layers all, per-token ranges), write each run's int8 weights
# (frugal convert --quantize int8), and measure the perplexity of held-out text (the
# last 40000 bytes of the file, never trained on) with `frugal sample --eval`:
#   fp32          the plain run, fp32 inference          (the reference)
#   PTQ int8      the plain run, int8 inference          (post-training quantization)
#   QAT fake      the QAT run, fp32 GEMMs on fake-quantized values (what training saw)
#   QAT int8      the QAT run, int8 inference             (target: within 1% of fp32)
# MoE: QAT and int8 cover attention and the dense layers' FFNs; routed and shared experts
# stay fp32 (their GEMMs are not behind the linear-layer hook, docs/PRECISION.md).
# Usage: bench/int8_quality.sh [BUILD_DIR=build] [OUT_DIR=runs/int8_quality]
# Env: STEPS (default 600), CONFIGS (default "demo moe_demo"), THREADS (default 2),
#      DATA (default ../shared/data/tinyshakespeare.txt).
set -euo pipefail
build=${1:-build}
out=${2:-runs/int8_quality}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$build/frugal
steps=${STEPS:-600}
threads=${THREADS:-2}
data=${DATA:-$root/../shared/data/tinyshakespeare.txt}
[ -x "$bin" ] || { echo "int8_quality: $bin is not built" >&2; exit 2; }
[ -f "$data" ] || { echo "int8_quality: no $data (../shared/data)" >&2; exit 2; }
mkdir -p "$out"
head -c -40000 "$data" > "$out/train.txt"
tail -c 40000 "$data" > "$out/eval.txt"

ppl() { # run, extra sample flags...
  local run=$1
  shift
  "$bin" sample --run "$run" --threads "$threads" --eval "$out/eval.txt" "$@" 2>/dev/null |
    sed -n 's/^eval: .* perplexity \([0-9.]*\) .*/\1/p'
}

rows=()
for cfg in ${CONFIGS:-demo moe_demo}; do
  for mode in fp32 qat; do
    run=$out/$cfg-$mode
    flags=()
    [ "$mode" = qat ] && flags=(--qat-layers all --qat-act token)
    rm -rf "$run"
    echo "int8_quality: training $cfg ($mode, $steps steps)"
    "$bin" train --config "$root/configs/$cfg.json" --data "$out/train.txt" --tokenizer byte --out "$run" \
      --max-steps "$steps" --max-seconds 0 --threads "$threads" "${flags[@]}" > "$run.log" 2>&1
    "$bin" convert --quantize int8 --run "$run" --layers all > /dev/null
  done
  ref=$(ppl "$out/$cfg-fp32")
  ptq=$(ppl "$out/$cfg-fp32" --int8)
  fake=$(ppl "$out/$cfg-qat")
  qint8=$(ppl "$out/$cfg-qat" --int8)
  rows+=("$cfg $ref $ptq $fake $qint8")
done

echo
echo "== held-out perplexity ($steps steps, byte tokenizer; ratio to the fp32 row; target: QAT int8 at most 1% above) =="
printf "%-10s %12s %18s %18s %18s  %s\n" config fp32 "PTQ int8" "QAT fake" "QAT int8" verdict
for r in "${rows[@]}"; do
  read -r cfg ref ptq fake qint8 <<< "$r"
  awk -v c="$cfg" -v r="$ref" -v p="$ptq" -v f="$fake" -v q="$qint8" 'BEGIN {
    printf "%-10s %12.4f %10.4f (%+5.2f%%) %10.4f (%+5.2f%%) %10.4f (%+5.2f%%)  %s\n", c, r,
      p, 100 * (p / r - 1), f, 100 * (f / r - 1), q, 100 * (q / r - 1),
      q / r - 1 > 0.01 ? "WORSE than fp32 by over 1%" : q / r - 1 < -0.01 ? "better than fp32" : "within 1%" }'
done
echo "int8_quality: runs and logs in $out"
