#!/usr/bin/env bash
# bench_ep_placement.sh: expert placement from the load history on configs/moe_demo.json
# (64 experts, top-2, 3 MoE layers) at ep 4: every INTERVAL steps (a checkpoint boundary)
# the experts are re-placed from the loads of the interval just ended. Reported per
# boundary, for the worst MoE layer, the max/mean per-rank expert load (rows a rank
# computes), per micro-batch (what a step waits for) and summed over the interval:
#   - contiguous: had the experts stayed in their first blocks (rank r: 16r..16r+15);
#   - placement:  with the placement made at the previous boundary from the load history
#                 (out of sample: made from the loads before, measured on those after);
#   - as run:     placement + spill (the rows above a rank's share +1% computed by the
#                 least loaded rank, each micro-batch; ep_spill);
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
  { step=$2; before=$4; after=$6; contig=$8; n=$10; moved=$12; mc=$14; mp=$16; mr=$18
    printf "step %5d  steps %3d | per micro-batch: contiguous %.3f  placement %.3f  as run (placement + spill) %.3f | summed over the steps: contiguous %.3f  placement in use %.3f  re-placed %.3f  moved %d\n", step, n, mc, mp, mr, contig, before, after, moved
    if (NR > 1) { k++; a += mc; b += mp; c += mr; sc += contig; su += before; if (mr > wr) wr = mr; if (mc > wc) wc = mc; if (mp > wp) wp = mp } }
  END { if (k) {
    printf "boundaries 2..%d, max/mean rows per rank per micro-batch (worst layer), mean over intervals: contiguous %.3f, placement %.3f, as run %.3f; worst interval: %.3f, %.3f, %.3f\n", NR, a / k, b / k, c / k, wc, wp, wr
    printf "summed over each interval (out of sample): contiguous %.3f, placement %.3f\n", sc / k, su / k } }' \
  | tee "$out/placement.txt"
