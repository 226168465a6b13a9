#!/usr/bin/env bash
# bench_tok.sh: tokenizer benchmark, one run: GPT-2 encode MB/s (1 thread, all threads)
# of Frugal, tiktoken and Hugging Face tokenizers on the same texts, and the time to
# train a 32k vocabulary on ~100 MB (Frugal vs HF BpeTrainer). Prints MB/s and ratios.
#   bench/bench_tok.sh            (env: BUILD=build dir, SHARED=../shared, REPS=3, TRAIN_MB=100,
#                                  BENCH_TOK=path of a bench_tok binary)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
SHARED=${SHARED:-$ROOT/../shared}
REPS=${REPS:-3}
TRAIN_MB=${TRAIN_MB:-100}
BIN=${BENCH_TOK:-$BUILD/bench_tok}
if [ -z "${BENCH_TOK:-}" ]; then
  cmake --build "$BUILD" --target bench_tok >/dev/null
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 "$ROOT/tools/tok_bench_peers.py" prepare --shared "$SHARED" --out "$WORK" --train-mb "$TRAIN_MB"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN" --tokenizer "$SHARED/data/gpt2" --save-json "$WORK/gpt2.json" --reps "$REPS" "$WORK"/texts/*.txt \
  --train "$WORK/train.txt" > "$WORK/frugal.txt"
python3 "$ROOT/tools/tok_bench_peers.py" run --texts "$WORK/texts" --train "$WORK/train.txt" \
  --gpt2-json "$WORK/gpt2.json" --frugal "$WORK/frugal.txt" --reps "$REPS"
