#!/usr/bin/env bash
# bench_ep_volume.sh: bytes per optimiser step, per rank, of the data- and expert-parallel
# dimensions on configs/moe_demo.json, measured by src/dist's counter (fg_comm_bytes_sent,
# the "fg_comm counter" line of the cost summary) next to the analytic counts of
# docs/SCALING.md: dp all-reduce 2(p-1)/p x 4 n_params; ep 4 exchanges per MoE layer and
# micro-batch of the rows owned elsewhere ((ep-1)/ep of the K rows of each token, fp32 x
# d_model) plus the count vectors. Byte counts, not timings.
# Usage: bench/bench_ep_volume.sh [BUILD_DIR=build] [OUT_DIR=runs/ep_volume]
# Env: SPILL=0 turns the spill off (each expert's rows to its owner only: the analytic
#      count's assumption); with it (default) rows moved to their own source rank stay.
set -euo pipefail
build=${1:-build}
out=${2:-runs/ep_volume}
root=$(cd "$(dirname "$0")/.." && pwd)
data=${DATA:-$root/../shared/data/tinyshakespeare.txt}
[ -x "$build/frugal" ] || { echo "bench_ep_volume.sh: $build/frugal missing" >&2; exit 2; }
command -v mpirun >/dev/null || { echo "bench_ep_volume.sh: mpirun not on PATH" >&2; exit 2; }
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
A=8 B=4 T=128 STEPS=4
"$build/frugal" train --config "$root/configs/moe_demo.json" --data "$data" --out "$out/prep" --max-steps 1 \
  --batch-size 1 --seq-len 16 > /dev/null 2>&1
shards="--train-shards $out/prep/data/train.bin --val-shards $out/prep/data/val.bin"
printf "%-10s %14s %14s %14s %14s\n" layout "dp measured" "dp analytic" "ep measured" "ep analytic"
for layout in "4 1" "1 4" "2 2" "1 2"; do
  set -- $layout
  dp=$1 ep=$2 np=$(($1 * $2)) name="dp${1}_ep${2}"
  rm -rf "$out/$name"
  mpirun --oversubscribe -np $np --bind-to none -x OMP_NUM_THREADS=1 "$build/frugal" train \
    --config "$root/configs/moe_demo.json" $shards --dp $dp --ep $ep --ep-spill ${SPILL:-1} --grad-accum $A --batch-size $B --seq-len $T \
    --max-steps $STEPS --val-every 0 --log-every 1000 --threads 1 --out "$out/$name" > "$out/$name.log" 2>&1
  awk -v dp=$dp -v ep=$ep -v A=$A -v B=$B -v T=$T -v name=$name -v cfg="$root/configs/moe_demo.json" '
    function bytes(v, u) { return u == "B" ? v : u == "KiB" ? v * 1024 : u == "MiB" ? v * 1048576 : v * 1073741824 }
    /^params          :/ { np = $3 }
    /^fg_comm counter :/ { batch = bytes($4, $5); if ($0 ~ /ep group/) { n = split($0, w, " "); epb = bytes(w[n - 1], w[n]) } }
    END {
      while ((getline line < cfg) > 0) {
        if (line ~ /"n_layer"/) { gsub(/[^0-9]/, "", line); L = line }
        if (line ~ /"d_model"/) { gsub(/[^0-9]/, "", line); C = line }
        if (line ~ /"n_dense_layers"/) { gsub(/[^0-9]/, "", line); D = line }
        if (line ~ /"n_expert"/) { gsub(/[^0-9]/, "", line); E = line }
        if (line ~ /"n_expert_active"/) { gsub(/[^0-9]/, "", line); K = line }
      }
      p = dp * ep; micro = A / p
      dpa = p > 1 ? 2 * (p - 1) / p * np * 4 : 0
      epa = ep > 1 ? (L - D) * micro * (4 * (ep - 1) / ep * B * T * K * C * 4 + (ep - 1) * E * 4) : 0
      printf "%-10s %14.0f %14.0f %14.0f %14.0f\n", name, batch, dpa, epb, epa }' "$out/$name.log"
done | tee "$out/volume.txt"
