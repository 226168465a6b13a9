#!/usr/bin/env bash
# demo.sh: trains a small model on the default corpus for a few minutes on the CPU,
# prints validation loss as it falls, samples the model and ends with the cost summary.
# Usage: scripts/demo.sh path/to/frugal [extra `frugal train` flags]
# Corpus: ../shared/data/tinyshakespeare.txt when present, else the text of Debian's
# fortunes package. Tokenizer: a small BPE trained on the corpus (`frugal tokenize`),
# or the byte tokenizer with FG_DEMO_TOKENIZER=byte. Model: configs/demo.json (a small
# MoE; FG_DEMO_CONFIG=configs/demo_dense.json for the dense twin). Run directory: runs/demo.
set -euo pipefail
bin=${1:-build/frugal}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
out=${FG_DEMO_OUT:-runs/demo}
[ -x "$bin" ] || { echo "demo: $bin is not an executable (build first: make build)" >&2; exit 2; }

mkdir -p runs
# FG_DEMO_CORPUS: a text file, or "fortunes" to force the fallback corpus
corpus=${FG_DEMO_CORPUS:-$root/../shared/data/tinyshakespeare.txt}
if [ "$corpus" = fortunes ] || [ ! -f "$corpus" ]; then
  corpus=runs/fortunes.txt
  fdir=/usr/share/games/fortunes
  [ -d "$fdir" ] || { echo "demo: no corpus: neither ../shared/data/tinyshakespeare.txt nor $fdir (apt-get install fortunes-min)" >&2; exit 2; }
  # plain-text fortune files only (no .dat indexes, no .u8 duplicates); '%' lines separate fortunes
  find "$fdir" -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' -print0 | sort -z | xargs -0 cat | sed 's/^%$//' > "$corpus"
fi
echo "demo: corpus $corpus ($(wc -c < "$corpus") bytes)"

# A fresh run directory each time (only the demo's own).
rm -rf "$out"
mkdir -p "$out"
tok=${FG_DEMO_TOKENIZER:-bpe}
if [ "$tok" = bpe ] && "$bin" tokenize --help 2>&1 | grep -q "tokenize train"; then
  "$bin" tokenize train --out "$out/tokenizer.json" --vocab-size 1024 "$corpus" >/dev/null
  tok="$out/tokenizer.json"
else
  tok=byte
fi
echo "demo: tokenizer $tok"

"$bin" train --config "${FG_DEMO_CONFIG:-$root/configs/demo.json}" --data "$corpus" --tokenizer "$tok" \
  --out "$out" "$@" | tee "$out/train.log"

echo
echo "== samples =="
"$bin" sample --run "$out" --n 300 --num-samples 2 --temperature 0.8 --top-k 40 --seed 7

echo
echo "== summary =="
grep -E "val loss" "$out/train.log" | sed -n '1p;$p' | sed 's/^/  /'
sed -n '/== cost summary ==/,$p' "$out/train.log"
