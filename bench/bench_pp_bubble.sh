#!/usr/bin/env bash
# bench_pp_bubble.sh: the pipeline bubble of the contiguous (V = 1) and the interleaved
# (V = 2, 4) 1F1B schedules against (p-1)/(V m + p-1) (docs/DIST.md "Interleaved schedule").
# One run per V of the same training (llama, 8 layers, d_model 128, B 4, T 128, pp 2,
# m = 8 micro-batches, one thread per rank); prints each run's measured bubble (the mean
# over steps after the first of 1 - compute / wall, `pp_bubble` in metrics.jsonl), the
# theoretical one, rank 0's bytes sent per step and tokens/s over the same steps. A ratio
# per run, so the figures mean something only with a core per rank (PP <= nproc) and no
# other load.
# Usage: bench/bench_pp_bubble.sh [BUILD_DIR=build] [OUT_DIR=runs/pp_bubble]
# Env: PP (2), CHUNKS ("1 2 4"), STEPS (12), ACCUM (8), THREADS (per rank, 1), MODEL, DATA.
set -euo pipefail
build=${1:-build}
out=${2:-runs/pp_bubble}
root=$(cd "$(dirname "$0")/.." && pwd)
pp=${PP:-2}
chunks=${CHUNKS:-1 2 4}
steps=${STEPS:-12}
accum=${ACCUM:-8}
threads=${THREADS:-1}
data=${DATA:-$root/../shared/data/tinyshakespeare.txt}
model=${MODEL:---layout llama --n-layer 8 --n-head 4 --d-model 128 --batch-size 4 --seq-len 128}
[ -x "$build/frugal" ] || { echo "bench_pp_bubble.sh: $build/frugal missing" >&2; exit 2; }
[ -f "$data" ] || { echo "bench_pp_bubble.sh: no corpus at $data (set DATA=...)" >&2; exit 2; }
command -v mpirun > /dev/null || { echo "bench_pp_bubble.sh: mpirun missing (scripts/deps.sh)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive OMP_NUM_THREADS=$threads
mkdir -p "$out"
echo "== machine: $(nproc --all) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ); pp=$pp, m=$accum, $steps steps"
"$build/frugal" train --data "$data" --tokenizer byte --out "$out/prep" --max-steps 1 --n-layer 1 --n-head 1 \
  --d-model 8 --overwrite 1 > /dev/null 2>&1
common="--train-shards $out/prep/data/train.bin --tokenizer byte $model --grad-accum $accum --max-steps $steps
  --warmup-steps 0 --val-every 0 --log-every 100000 --threads $threads --ckpt-every 0 --overwrite 1"
printf '%-4s %-12s %-12s %-10s\n' V theoretical measured tokens/s
for v in $chunks; do
  name=v$v
  # shellcheck disable=SC2086
  mpirun --oversubscribe --bind-to none -np "$pp" "$build/frugal" train --pp "$pp" --pp-chunks "$v" $common \
    --out "$out/$name" > "$out/$name.log" 2>&1 || { tail -5 "$out/$name.log" >&2; exit 1; }
  grep '"loss"' "$out/$name/metrics.jsonl" | tail -n +2 |
    awk -v v="$v" '{ i = index($0, "\"pp_bubble\": "); b += substr($0, i + 13) + 0;
                     j = index($0, "\"pp_bubble_theory\": "); th = substr($0, j + 20) + 0;
                     k = index($0, "\"step_s\": "); s += substr($0, k + 10) + 0;
                     l = index($0, "\"tokens\": "); t[++n] = substr($0, l + 10) + 0 }
                   END { printf "%-4s %-12.4f %-12.4f %-10.1f\n", v, th, b / n, (t[n] - t[1]) * n / (n - 1) / s }'
done
