#!/usr/bin/env bash
# bench_pp_memory.sh: memory per rank of a pipeline run at pp 1, 2 and 4 (docs/DIST.md
# "Memory per rank"): the bytes of fp32 params + grads + Adam m, v each rank keeps (the
# summary's "stage mem bytes" line: rank 0's share, the largest other rank's, the whole
# model's; pp 1 keeps the whole) and every rank's peak RSS (GNU time's %M around each
# rank). Memory, not speed: the figures do not depend on the machine's load.
# BASE=path/to/an/older/frugal runs the same layouts with that binary too (its summary has
# no stage line: only the peak RSS), for a before / after table. CKPT=1 adds a checkpoint
# and a validation at the last step (besides final/, which every run writes): the moments
# where rank 0 used to gather the whole model.
# Usage: bench/bench_pp_memory.sh [BUILD_DIR=build] [OUT_DIR=runs/pp_memory]
# Env: PPS ("1 2 4"), STEPS (5), ACCUM (4), MODEL, DATA, BASE, CKPT (0).
set -euo pipefail
build=${1:-build}
out=${2:-runs/pp_memory}
root=$(cd "$(dirname "$0")/.." && pwd)
pps=${PPS:-1 2 4}
steps=${STEPS:-5}
accum=${ACCUM:-4}
data=${DATA:-$root/../shared/data/tinyshakespeare.txt}
model=${MODEL:---layout llama --n-layer 16 --n-head 4 --d-model 256 --batch-size 2 --seq-len 64}
[ -x "$build/frugal" ] || { echo "bench_pp_memory.sh: $build/frugal missing" >&2; exit 2; }
[ -f "$data" ] || { echo "bench_pp_memory.sh: no corpus at $data (set DATA=...)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "bench_pp_memory.sh: GNU time missing (apt-get install time)" >&2; exit 2; }
command -v mpirun > /dev/null || { echo "bench_pp_memory.sh: mpirun missing (scripts/deps.sh)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mkdir -p "$out"
"$build/frugal" train --data "$data" --tokenizer byte --out "$out/prep" --max-steps 1 --n-layer 1 --n-head 1 \
  --d-model 8 --overwrite 1 > /dev/null 2>&1
common="--train-shards $out/prep/data/train.bin --tokenizer byte $model --grad-accum $accum --max-steps $steps
  --max-seconds 0 --val-every 0 --log-every 100000 --threads 1 --overwrite 1"
if [ "${CKPT:-0}" = 1 ]; then
  common="$common --ckpt-every $steps --val-shards $out/prep/data/val.bin --val-batches 2"
else
  common="$common --ckpt-every 0"
fi
echo "== $model, $steps steps, m = $accum, checkpoint + validation ${CKPT:-0}"
printf '%-8s %-4s %-16s %-16s %-16s %-14s %-14s\n' binary pp "whole p+g+m+v" "rank 0 keeps" "others at most" \
  "RSS rank 0" "RSS others max"
run() { # binary label pp
  local bin=$1 label=$2 pp=$3 log="$out/$2_pp$3.log" rss="$out/$2_pp$3.rss"
  rm -f "$rss".*
  # each rank's peak RSS into its own file (GNU time, rank from OpenMPI's environment)
  # shellcheck disable=SC2016,SC2086
  if [ "$pp" = 1 ]; then
    /usr/bin/time -f "%M" -o "$rss.0" "$bin" train $common --out "$out/${label}_pp$pp" > "$log" 2>&1
  else
    mpirun --oversubscribe --bind-to none -np "$pp" sh -c '/usr/bin/time -f "%M" -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' \
      "$rss" "$bin" train --pp "$pp" $common --out "$out/${label}_pp$pp" > "$log" 2>&1
  fi || { tail -5 "$log" >&2; exit 1; }
  local r0 orss=0 k
  r0=$(cat "$rss.0")
  for f in "$rss".*; do
    [ "$f" = "$rss.0" ] && continue
    k=$(cat "$f")
    [ "$k" -gt "$orss" ] && orss=$k
  done
  awk -v label="$label" -v pp="$pp" -v r0rss="$r0" -v orss="$orss" '
    /stage mem bytes/ { for (i = 1; i <= NF; i++) { if ($i == "whole") w = $(i+1); if ($i == "rank0") r0 = $(i+1);
                                                    if ($i == "others") o = $(i+1) } }
    END { f = "%-8s %-4s %-16s %-16s %-16s %-14s %-14s\n"
          mib = 1048576
          printf f, label, pp, (w ? sprintf("%.2f MiB", w / mib) : "-"), (r0 ? sprintf("%.2f MiB", r0 / mib) : "-"),
                 (o ? sprintf("%.2f MiB", o / mib) : "-"), sprintf("%.1f MiB", r0rss / 1024),
                 (orss ? sprintf("%.1f MiB", orss / 1024) : "-") }' "$log"
}
for pp in $pps; do
  run "$build/frugal" new "$pp"
  if [ -n "${BASE:-}" ]; then run "$BASE" base "$pp"; fi
done
