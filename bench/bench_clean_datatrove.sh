#!/usr/bin/env bash
# bench_clean_datatrove.sh: `frugal clean --profile datatrove` against datatrove's default
# GopherRepetitionFilter + GopherQualityFilter + C4QualityFilter on the same documents,
# both in this one run: the Jaccard of the kept sets, each disagreement with datatrove's
# reason, and MB of input per CPU-second of each (Frugal --threads 1, its report's
# cpu_seconds; datatrove the filter calls, spaCy's tokenizer warmed up first).
# The documents: the text of ../shared/data/web (HTML extracted, WARC/WET/JSONL read) as
# configs/clean_rules_extract.conf leaves it, one JSONL line each, numbered ("line").
# usage: bench/bench_clean_datatrove.sh [BUILD_DIR]   (python with datatrove: bench/peers_python.sh;
#        tools/setup_peers.sh installs it)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
F=$BUILD/frugal
SHARED=${FG_SHARED_DIR:-../shared}/data
. bench/peers_python.sh
[ -x "$F" ] || { echo "bench_clean_datatrove: $F not built"; exit 2; }
[ -d "$SHARED/web" ] || { echo "bench_clean_datatrove: $SHARED/web not found"; exit 2; }
"$PY" -c "import datatrove, spacy" 2>/dev/null || { echo "bench_clean_datatrove: no datatrove/spacy in $PY"; exit 2; }
W=$(mktemp -d /tmp/bench_clean_dt.XXXXXX)
trap 'rm -rf "$W"' EXIT
"$F" clean "$SHARED/web" --rules configs/clean_rules_extract.conf --no-dedup --no-langid -o "$W/web.jsonl" -q --no-progress 2>/dev/null
python3 - "$W/web.jsonl" "$W/in.jsonl" <<'PY'
import json, sys
with open(sys.argv[2], "w", encoding="utf-8") as o:
    for i, l in enumerate(open(sys.argv[1], encoding="utf-8")):
        o.write(json.dumps({"text": json.loads(l)["text"], "line": i}, ensure_ascii=False) + "\n")
PY
"$F" clean "$W/in.jsonl" --profile datatrove --no-dedup --no-langid --threads 1 -o "$W/kept.jsonl" \
    --report "$W/rep.json" -q --no-progress
python3 -c "import json,os,sys; r=json.load(open('$W/rep.json')); mb=os.path.getsize('$W/in.jsonl')/1e6; print(f'frugal --profile datatrove: {mb/r[\"cpu_seconds\"]:.2f} MB per CPU-second ({r[\"cpu_seconds\"]:.3f} s for {mb:.2f} MB), kept {r[\"docs_kept\"]}')"
"$PY" tools/data_datatrove_compare.py "$W/in.jsonl" "$W/kept.jsonl" "$W/dt" 2>&1 | grep -v -E "^20[0-9][0-9]-|INFO|WARNING"
