#!/usr/bin/env bash
# bench_extract.sh: main-content extraction on the 207 pages of trafilatura's evaluation
# set in ../shared/data/web/trafilatura_eval, scored as trafilatura scores it (strings of
# evaldata.json that must / must not survive; tools/extract_eval.py), Frugal and
# trafilatura side by side in one run, with MB of HTML per CPU-second (= MB/s per core).
# Frugal runs with --threads 1 and no dedup; its CPU time includes reading (and gunzip,
# except in the .html row), language identification and writing JSON, trafilatura's only
# the extract() calls on HTML already in memory. Rows:
#   frugal dom + extract rules   DOM extraction, then only tag/entity/space rules
#                                (configs/clean_rules_extract.conf; no quality filter)
#   ... (.html input)            the same on the pages gunzipped beforehand (not timed),
#                                as trafilatura is timed
#   frugal dom + default rules   the same with the default line filters and quality
#                                heuristics (a rejected page scores as empty text)
#   frugal regex (no DOM)        --extract none: the regex tag stripping of before
#   trafilatura X / fast         trafilatura.extract(html) / extract(html, fast=True)
# and the language identification accuracy (cld2, "lang" of the first row's output)
# against the pages' <html lang> (tools/data_langid_eval.py).
# usage: bench/bench_extract.sh [BUILD_DIR]   (python with trafilatura: bench/peers_python.sh;
#        without it only Frugal's rows)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
F=$BUILD/frugal
SHARED=${FG_SHARED_DIR:-../shared}/data
PAGES=$SHARED/web/trafilatura_eval
[ -x "$F" ] || { echo "bench_extract: $F not built"; exit 2; }
[ -d "$PAGES" ] || { echo "bench_extract: $PAGES not found"; exit 2; }
. bench/peers_python.sh
W=$(mktemp -d /tmp/bench_extract.XXXXXX)
trap 'rm -rf "$W"' EXIT
run() { # NAME ARGS...
  local name=$1; shift
  "$F" clean "$PAGES" --no-dedup --threads 1 -o "$W/$name.jsonl" --report "$W/$name.json" -q --no-progress "$@"
}
run dx --rules configs/clean_rules_extract.conf
mkdir "$W/html"
for f in "$PAGES"/*.html.gz; do gzip -dc "$f" > "$W/html/$(basename "$f" .gz)"; done
"$F" clean "$W/html" --no-dedup --threads 1 -o "$W/dh.jsonl" --report "$W/dh.json" -q --no-progress \
  --rules configs/clean_rules_extract.conf
run dd
run rx --rules configs/clean_rules_extract.conf --extract none
args=(--frugal "frugal dom + extract rules" "$W/dx.jsonl" "$W/dx.json"
      --frugal "frugal dom + extract rules (.html)" "$W/dh.jsonl" "$W/dh.json"
      --frugal "frugal dom + default rules" "$W/dd.jsonl" "$W/dd.json"
      --frugal "frugal regex (no DOM)" "$W/rx.jsonl" "$W/rx.json")
if "$PY" -c "import trafilatura" 2>/dev/null; then
  args+=(--trafilatura)
else
  echo "bench_extract: no trafilatura in $PY (pip install trafilatura lxml_html_clean): Frugal rows only"
fi
python3 tools/data_langid_eval.py "$PAGES/INDEX.tsv" "$W/dx.jsonl" "$W/dx.jsonl.rejects.jsonl"
"$PY" tools/extract_eval.py "$SHARED/web/evaldata.json.gz" "$PAGES" "${args[@]}" ${PER_PAGE:+--per-page "$PER_PAGE"}
