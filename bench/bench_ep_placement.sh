#!/usr/bin/env bash
# bench_ep_placement.sh: expert placement from the load history on configs/moe_demo.json
# (64 experts, top-2, 3 MoE layers) at ep 4: every INTERVAL steps (a checkpoint boundary)
# the experts are re-placed from the loads of the interval just ended. Reported per
# boundary, for the worst MoE layer, the max/mean per-rank expert load (rows routed to the
# experts a rank runs, all ranks' tokens) over the interval
#   - contiguous: with the first placement (rank r: experts 16r..16r+15), never moved;
#   - in use:     with the placement made at the previous boundary (out of sample: made
#                 from the loads before, measured on the loads after);
#   - re-placed:  the new placement on the loads it was made from (in sample).
# Load counts, not timings: the figures do not depend on the machine. docs/PERFORMANCE.md
# section "Expert placement" has them.
# Usage: bench/bench_ep_placement.sh [BUILD_DIR=build] [OUT_DIR=runs/ep_placement]
# Env: DATA (text file), STEPS (default 300; the config's max_seconds is lifted to 900),
#      INTERVAL (default 25), BALANCE (default: the config's "bias").
set -euo pipefail
build=${1:-build}
out=${2:-runs/ep_placement}
root=$(cd "$(dirname "$0")/.." && pwd)
data=${DATA:-$root/../shared/data/tinyshakespeare.txt}
steps=${STEPS:-300}
interval=${INTERVAL:-25}
[ -x "$build/frugal" ] || { echo "bench_ep_placement.sh: $build/frugal missing" >&2; exit 2; }
[ -f "$data" ] || { echo "bench_ep_placement.sh: no corpus at $data (set DATA=...)" >&2; exit 2; }
command -v mpirun >/dev/null || { echo "bench_ep_placement.sh: mpirun not on PATH (openmpi-bin)" >&2; exit 2; }
mkdir -p "$out"
rm -rf "$out/run"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "== moe_demo at ep 4, re-placement every $interval steps, $(date -u +%FT%TZ)"
mpirun --oversubscribe -np 4 --bind-to none -x OMP_NUM_THREADS=1 "$build/frugal" train \
  --config "$root/configs/moe_demo.json" --data "$data" --ep 4 --grad-accum 4 --batch-size 4 \
  --max-steps "$steps" --max-seconds 900 --ckpt-every "$interval" --ckpt-keep 1 --val-every 0 --log-every 1000 --threads 1 \
  ${BALANCE:+--balance $BALANCE} --out "$out/run" > "$out/train.log" 2>&1
grep '"ep_load_before"' "$out/run/metrics.jsonl" | awk -F'[:,}]' '
  { step=$2; before=$4; after=$6; contig=$8; n=$10; moved=$12
    printf "step %5d  steps %3d  contiguous %.3f  in use %.3f  re-placed %.3f  moved %d\n", step, n, contig, before, after, moved
    if (NR > 1) { k++; sc += contig; su += before; if (contig > mc) mc = contig; if (before > mu) mu = before } }
  END { if (k) printf "boundaries 2..%d (out of sample): max/mean rank load, mean over intervals: contiguous %.3f, placed %.3f; worst interval: contiguous %.3f, placed %.3f\n", NR, sc / k, su / k, mc, mu }' \
  | tee "$out/placement.txt"
