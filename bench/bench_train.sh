#!/usr/bin/env bash
# bench_train.sh: training tokens/s of Frugal against PyTorch (CPU, fp32, same model,
# same thread count) and, when given, llm.c's train_gpt2.c CPU trainer, all in one run,
# on (a) GPT-2 124M at B=4 T=64 and (b) L6 C384 NH6 at B=4 T=256; plus Frugal's
# achieved training FLOP/s over sgemm FLOP/s measured in the same `frugal bench`.
#
# Usage: bench/bench_train.sh [--frugal build/frugal] [--llmc PATH/train_gpt2] [--llmc-t256 PATH/train_gpt2_T256]
#                             [--iters N] [--threads N] [--configs "a b"]
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
while [ $# -gt 0 ]; do
  case "$1" in
    --frugal) frugal=$2; shift 2 ;;
    --llmc) llmc=$2; shift 2 ;;
    --llmc-t256) llmc256=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --configs) configs=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "bench_train: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$frugal" ] || { echo "bench_train: $frugal not built" >&2; exit 2; }
export OMP_NUM_THREADS=$threads
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

field() { sed -n "s/.*$1=\([0-9.e+-]*\).*/\1/p" | tail -1; }

declare -A F T L R
run_config() { # name L C NH B T
  local name=$1 nl=$2 c=$3 nh=$4 b=$5 t=$6
  echo "== ($name) GPT-2 layout L=$nl C=$c NH=$nh V=50257 B=$b T=$t, fp32, $threads threads =="
  local out
  out=$("$frugal" bench --layout gpt2 --n-layer "$nl" --d-model "$c" --n-head "$nh" --vocab-size 50257 \
        --max-seq-len 1024 --batch-size "$b" --seq-len "$t" --threads "$threads" --iters "$iters" --warmup-iters 1)
  echo "$out"
  F[$name]=$(echo "$out" | grep '^bench.train ms_per_step' | field tokens_per_s)
  R[$name]=$(echo "$out" | field achieved_over_best_sgemm)
  if python3 -c "import torch" 2>/dev/null; then
    out=$(python3 "$root/tools/torch_train_bench.py" --layers "$nl" --d-model "$c" --heads "$nh" --B "$b" --T "$t" \
          --iters "$iters" --warmup 1 --threads "$threads")
    echo "$out"
    T[$name]=$(echo "$out" | field tokens_per_s)
  else
    echo "torch: not installed, skipped"; T[$name]=""
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
  for i in $(seq 1 12); do cat "$d/text.txt" "$d/text.txt" > "$d/t2" && mv "$d/t2" "$d/text.txt"; done
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

echo
echo "== summary (tokens/s, higher is better; ratios measured in this run) =="
printf "%-4s %10s %10s %10s %12s %12s %14s\n" cfg frugal torch llm.c frugal/torch frugal/llm.c achieved/sgemm
for k in $configs; do
  ft=${T[$k]:-}; fl=${L[$k]:-}
  rt=$([ -n "$ft" ] && awk -v a="${F[$k]}" -v b="$ft" 'BEGIN{printf "%.2f", a/b}' || echo "-")
  rl=$([ -n "$fl" ] && awk -v a="${F[$k]}" -v b="$fl" 'BEGIN{printf "%.2f", a/b}' || echo "-")
  printf "%-4s %10s %10s %10s %12s %12s %14s\n" "$k" "${F[$k]}" "${ft:--}" "${fl:--}" "$rt" "$rl" "${R[$k]}"
done
echo "targets: frugal/torch >= 1.3, frugal/llm.c >= 5, achieved/sgemm >= 0.7"
