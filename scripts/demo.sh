#!/usr/bin/env bash
# demo.sh: trains a small model on the default corpus for a few minutes on the CPU,
# prints validation loss as it falls, samples the best model and ends with the cost
# summary, where the run is and how to sample it again.
# Usage: scripts/demo.sh path/to/frugal [extra `frugal train` flags, e.g. --max-steps 200]
# Corpus (FG_DEMO_CORPUS): a text file, or "debian" for the corpus built from Debian
# packages (scripts/deps.sh installs them): the full `fortunes` package (2.6 MB) and the
# King James Bible of `bible-kjv` (4.3 MB), each split 90/10 so that the held-out tail
# the trainer validates on holds both. Default: ../shared/data/tinyshakespeare.txt when
# present, else debian ("fortunes" is read as debian). Why this corpus: docs/TRAINING.md.
# Tokenizer: a small BPE trained on the corpus (`frugal tokenize`), or the byte tokenizer
# with FG_DEMO_TOKENIZER=byte. Model: configs/demo.json (a small MoE;
# FG_DEMO_CONFIG=configs/demo_dense.json for the dense twin); its max_epochs caps the
# steps at a few passes over the corpus, and best/ keeps the best-validation model.
# Run directory: runs/demo (FG_DEMO_OUT).
set -euo pipefail
bin=${1:-build/frugal}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
out=${FG_DEMO_OUT:-runs/demo}
[ -x "$bin" ] || { echo "demo: $bin is not an executable (build first: make build)" >&2; exit 2; }

mkdir -p runs
corpus=${FG_DEMO_CORPUS:-$root/../shared/data/tinyshakespeare.txt}
case "$corpus" in
  debian|fortunes) corpus=debian ;;
  *) if [ ! -f "$corpus" ]; then
       [ -z "${FG_DEMO_CORPUS:-}" ] || { echo "demo: FG_DEMO_CORPUS=$corpus: no such file (or debian)" >&2; exit 2; }
       corpus=debian
     fi ;;
esac
if [ "$corpus" = debian ]; then
  fdir=/usr/share/games/fortunes
  if [ ! -f "$fdir/fortunes" ] || [ ! -f "$fdir/art" ] || ! command -v bible >/dev/null; then
    echo "demo: no corpus: neither ../shared/data/tinyshakespeare.txt nor the Debian corpus" \
         "(apt-get install fortunes bible-kjv, or run scripts/deps.sh)" >&2
    exit 2
  fi
  corpus=runs/debian_corpus.txt
  # Only the fortunes package's own files (English; other fortunes-* packages put other
  # languages and ASCII art in the same folder), no .dat indexes, no .u8 links.
  if command -v dpkg >/dev/null; then
    dpkg -L fortunes fortunes-min | grep "^$fdir/[^/]*$" | grep -v -e '\.dat$' -e '\.u8$' | sort > runs/.fortune_files
  else
    find "$fdir" -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' | sort > runs/.fortune_files
  fi
  # '%' lines separate fortunes; verses lose their leading indent
  xargs cat < runs/.fortune_files | sed 's/^%$//' > runs/.fortunes.txt
  bible -l0 'gen1:1-rev22:21' | sed 's/^ *//' > runs/.kjv.txt
  # 90% of each, then 10% of each: the trainer's held-out tail (val_frac 0.1) is both
  split90() { awk -v part="$2" -v n="$(wc -l < "$1")" '(part == "head") == (NR <= int(n * 0.9))' "$1"; }
  { split90 runs/.fortunes.txt head; split90 runs/.kjv.txt head
    split90 runs/.fortunes.txt tail; split90 runs/.kjv.txt tail; } > "$corpus"
  rm -f runs/.fortune_files runs/.fortunes.txt runs/.kjv.txt
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

# best/ (the lowest validation loss) when the run kept one, else final/
ckpt="$out/final"
[ -d "$out/best" ] && ckpt="$out/best"
sample_cmd="$bin sample --run $out --ckpt $ckpt --n 300 --num-samples 2 --temperature 0.8 --top-k 40 --seed 7"
echo
echo "== samples ($ckpt) =="
$sample_cmd

echo
echo "== summary =="
# first, best and last validation loss, from the run's metrics
awk -F'[:,}]' '/"val_loss"/ { s = $2 + 0; v = $4 + 0; if (n++ == 0) { fs = s; fv = v }
                 if (n == 1 || v < bv) { bs = s; bv = v } ls = s; lv = v }
     END { if (n) printf "  val loss %.4f at step %d -> best %.4f at step %d -> last %.4f at step %d\n",
                         fv, fs, bv, bs, lv, ls }' "$out/metrics.jsonl"
sed -n '/== cost summary ==/,$p' "$out/train.log"
echo
echo "demo: the run is in $out (config.json, metrics.jsonl, train.log, final/, best/ = lowest validation loss)"
echo "demo: sample it again with: $sample_cmd --prompt 'Your text'"
