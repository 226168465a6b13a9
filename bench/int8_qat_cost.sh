#!/usr/bin/env bash
# int8_qat_cost.sh: the training step cost of int8 quantization-aware training against
# fp32 (issue 14, must-show 3; docs/PERFORMANCE.md section 11): `frugal bench` (random
# tokens, the same model, batch, threads and kernels) per config three ways, fp32 and QAT
# of every linear layer but the head with per-token activation ranges (--qat-layers all
# --qat-act token) with straight-through (ste) and learned (lsq) weight steps, the three
# interleaved ROUNDS times; each row's best round (least disturbed) and its ratio to fp32.
# Timings are only worth quoting from a quiet machine.
# Usage: bench/int8_qat_cost.sh [BUILD_DIR=build]
# Env: CONFIGS ("demo_dense moe_demo"), THREADS (2), BATCH (8), SEQ (64), ITERS (10),
#      WARMUP (2), ROUNDS (3), VOCAB (256: bench/int8_quality.sh's byte tokenizer).
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$build/frugal
[ -x "$bin" ] || { echo "int8_qat_cost: $bin is not built" >&2; exit 2; }
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
for cfg in ${CONFIGS:-demo_dense moe_demo}; do
  for r in $(seq "${ROUNDS:-3}"); do
    for mode in fp32 ste lsq; do
      flags=()
      [ "$mode" != fp32 ] && flags=(--qat-layers all --qat-act token --qat-quant "$mode")
      line=$("$bin" bench --config "$root/configs/$cfg.json" --vocab-size "${VOCAB:-256}" --threads "${THREADS:-2}" \
        --batch-size "${BATCH:-8}" --seq-len "${SEQ:-64}" --iters "${ITERS:-10}" --warmup-iters "${WARMUP:-2}" \
        "${flags[@]}" 2>&1 | grep '^bench.train ms_per_step')
      ms=$(sed -n 's/.*ms_per_step=\([0-9.]*\).*/\1/p' <<< "$line")
      tps=$(sed -n 's/.*tokens_per_s=\([0-9.]*\).*/\1/p' <<< "$line")
      echo "$cfg $mode $r $ms $tps" | tee -a "$rows"
    done
  done
done
echo
echo "== training step, int8 QAT vs fp32 (frugal bench, ${THREADS:-2} threads, batch ${BATCH:-8} x ${SEQ:-64}, vocab ${VOCAB:-256}; best of ${ROUNDS:-3} interleaved rounds) =="
awk '{
  k = $1 " " $2
  if (!(k in ms)) order[++n] = k
  if (!(k in ms) || $4 < ms[k]) { ms[k] = $4; tps[k] = $5 }
} END {
  printf "%-11s %-5s %12s %12s %10s\n", "config", "mode", "ms/step", "tokens/s", "vs fp32"
  for (i = 1; i <= n; i++) {
    split(order[i], a, " "); f = ms[a[1] " fp32"]
    printf "%-11s %-5s %12.1f %12.1f %9.2fx\n", a[1], a[2], ms[order[i]], tps[order[i]], ms[order[i]] / f
  }
}' "$rows"
echo "(vs fp32: step time over fp32's; above 1 is QAT's cost)"
