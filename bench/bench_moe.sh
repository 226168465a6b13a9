#!/usr/bin/env bash
# bench_moe.sh: the MoE measurements, in one script run (docs/perf/moe.md):
#   1. block: MoE FFN forward+backward vs a dense SwiGLU FFN of the same active size
#      (bench_moe, one thread, wall and CPU time, both ways of running experts);
#   2. balance on tinyshakespeare, 64 routed experts, top-2, 1 shared (configs/moe_balance.json):
#      bias (the config's history rule: proportional, router at 0.1x lr) vs bias_sign
#      (DeepSeek-V3's sign rule, gamma 0.01) vs none vs seqaux vs switch aux loss, same seed,
#      data and model (only the balance settings differ);
#   3. cost: a dense model with the same active parameters (configs/moe_dense.json) trained
#      for the same training FLOPs as the MoE "bias" run: tokens per CPU-second (one
#      thread per run, so other jobs on a shared machine do not enter) and validation loss;
#   then tools/moe_plot.py prints the table and draws docs/moe_runs.png (if matplotlib).
# Usage: bench/bench_moe.sh [BUILD_DIR=build] [OUT_DIR=runs/moe_bench]
# Env: STEPS (default 400), DATA (text file), SEED (overrides the configs' seed),
#      SKIP_COST=1 (balance runs only, e.g. for a second seed), TP_STEPS (section 4),
#      PNG (figure prefix, default docs/moe).
set -euo pipefail
build=${1:-build}
out=${2:-runs/moe_bench}
root=$(cd "$(dirname "$0")/.." && pwd)
steps=${STEPS:-400}
seed_arg=${SEED:+seed=$SEED}
data=${DATA:-$root/../shared/data/tinyshakespeare.txt}
for b in bench_moe bench_moe_train frugal; do
  [ -x "$build/$b" ] || { echo "bench_moe.sh: $build/$b missing (cmake --build $build --target $b)" >&2; exit 2; }
done
[ -f "$data" ] || { echo "bench_moe.sh: no corpus at $data (set DATA=...)" >&2; exit 2; }
mkdir -p "$out"
echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ), gcc $(gcc -dumpfullversion)"

echo "== 1. block: C=128 E=64 K=2 S=1 H=64, 2048 tokens, 1 thread"
OMP_NUM_THREADS=1 "$build/bench_moe" 128 64 2 1 64 2048 20 | tee "$out/block.txt"

# BPE tokenizer (1024 ids) trained on the corpus: byte tokens make ' ' 15% of all
# tokens, one cluster no router can split over 64 experts (docs/MOE.md).
tok="$out/tok1024.json"
"$build/frugal" tokenize train --out "$tok" --vocab-size 1024 "$data" > /dev/null

run() { # name config extra-args...
  local name=$1 cfg=$2
  shift 2
  OMP_NUM_THREADS=1 "$build/bench_moe_train" "$root/configs/$cfg.json" "$out/$name.jsonl" data="$data" \
    tokenizer="$tok" threads=1 max_steps="$steps" $seed_arg "$@" > "$out/$name.out" 2>&1
  echo "   $name: $(grep -m1 'tokens/s' "$out/$name.out")"
}

echo "== 2. balance ($steps steps each, two runs side by side, one thread each)"
run bias moe_balance balance=bias &
run none moe_balance balance=none &
wait
run seqaux moe_balance balance=seqaux &
run switch moe_balance balance=switch &
wait
# DeepSeek-V3's rule as published: a fixed step gamma * sign(error), no proportional term
# (beside the dense run of section 3: both report tokens per CPU-second of one thread)
run bias_sign moe_balance balance=bias balance_gamma=0.01 balance_gain=0 &

if [ "${SKIP_COST:-0}" != 1 ]; then
echo "== 3. cost: dense at the MoE run's training FLOPs"
moe_flops=$(python3 -c "import json; print(json.loads(open('$out/bias.jsonl').readline())['flops_per_token'])")
OMP_NUM_THREADS=1 "$build/bench_moe_train" "$root/configs/moe_dense.json" "$out/dense_probe.jsonl" data="$data" \
  tokenizer="$tok" threads=1 max_steps=1 > /dev/null
dense_steps=$(python3 -c "import json; d=json.loads(open('$out/dense_probe.jsonl').readline())['flops_per_token']; print(round($steps*$moe_flops/d))")
echo "   dense steps for equal FLOPs: $dense_steps"
run dense moe_dense max_steps="$dense_steps"
wait

echo "== 4. throughput at $(nproc) threads: dense and MoE alternately, ${TP_STEPS:-60} steps each, 2 rounds"
for round in 1 2; do
  for cfg in moe_dense moe_balance; do
    OMP_NUM_THREADS=$(nproc) "$build/bench_moe_train" "$root/configs/$cfg.json" "$out/tp_$cfg.jsonl" data="$data" \
      tokenizer="$tok" threads=0 max_steps="${TP_STEPS:-60}" val_every=0 val_batches=1 > "$out/tp_$cfg.out" 2>&1
    echo "   round $round $cfg: $(grep -m1 'tokens/s' "$out/tp_$cfg.out")"
  done
done
fi
wait

echo "== per-layer loads at the end of the bias run"
sed -n '/expert loads since start/,$p' "$out/bias.out" | cut -c1-60
echo "== summary"
python3 "$root/tools/moe_plot.py" "$out" --png-prefix "${PNG:-$root/docs/moe}" | tee "$out/summary.md"
