#!/usr/bin/env bash
# bench_clean.sh: `frugal clean` figures, all measured in this one run:
#  1. the ambiguous-only design: on the shared web samples, the fraction of documents
#     sent to the classifier and the throughput of --classify ambiguous vs --classify all;
#     on a labeled web-quality set (tools/data_make_labeled.py), the accuracy of both;
#  2. MB of input per CPU-second of the same quality-filter + dedup pipeline in Frugal
#     and in Hugging Face datatrove (tools/data_datatrove_bench.py) on the same JSONL.
# Throughput is MB of input per CPU-second (user + system time of the process), i.e. MB/s
# per core; on shared machines this is steadier than wall time. Wall MB/s is printed too.
# usage: bench/bench_clean.sh [BUILD_DIR]   (needs ../shared/data; part 2 needs python3 with
#        datatrove 0.10.1 and the modules it imports without declaring them: regex,
#        tokenizers, orjson, spacy, xxhash - tools/setup_peers.sh installs them all, pinned,
#        in .venv; then run with PATH=".venv/bin:$PATH"). The modules are checked first;
#        when any is missing part 2 is skipped with their names. If the datatrove run fails,
#        its log is kept (bench_clean.datatrove.log in BUILD_DIR) and its tail printed.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
F=$BUILD/frugal
SHARED=${FG_SHARED_DIR:-../shared}/data
[ -x "$F" ] || { echo "bench_clean: $F not built (cmake --build $BUILD --target frugal)"; exit 2; }
[ -d "$SHARED/web" ] || { echo "bench_clean: $SHARED/web not found"; exit 2; }
W=$(mktemp -d /tmp/bench_clean.XXXXXX)
trap 'rm -rf "$W"' EXIT
REPS=${REPS:-3}
peer_mods=(datatrove regex tokenizers orjson spacy xxhash)
# each module looked up on its own, so the message names every one that is missing
peer_missing=$(python3 - "${peer_mods[@]}" <<'PY' 2>/dev/null || echo "python3"
import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
PY
)
if [ -n "$peer_missing" ]; then
  echo "bench_clean: part 2 (datatrove) will be skipped: missing Python modules: $peer_missing"
  echo "bench_clean:   install the pinned peers with tools/setup_peers.sh, then PATH=\"$PWD/.venv/bin:\$PATH\" $0 $BUILD"
fi
. bench/clean_util.sh

echo "== inputs"
make_web_inputs
"$F" clean train-classifier --input "$W/lab.train.jsonl" -o "$W/lab.cls" --test-frac 0 | grep -E "examples|trained"
echo "web samples: $(du -sh "$SHARED/web" | cut -f1) on disk; text corpus (HTML stripped, x4): $(du -h "$W/webtext.jsonl" | cut -f1)"

echo "== 1a. accuracy on the labeled test split (same rules, dedup off)"
for m in none ambiguous all; do
  "$F" clean "$W/lab.test.jsonl" --classifier "$W/lab.cls" --classify "$m" --eval-label label --no-dedup \
      -o "$W/lab.$m.jsonl" --report "$W/lab.$m.json" -q --no-progress
  python3 - "$W/lab.$m.json" "$m" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"  --classify {sys.argv[2]:9s} accuracy {r['label_correct']/r['labeled']:.4f} on {r['labeled']} segments, "
      f"sent to classifier {r['sent_to_classifier']}/{r['docs_read']}")
PY
done

echo "== 1b. ambiguous-only vs classify-all throughput on the web samples (1 thread, median of $REPS)"
for input in "$SHARED/web" "$W/webtext.jsonl"; do
  a=$(cpu_median "$input" --classifier "$W/lab.cls" --classify ambiguous --threads 1 -o "$W/o.jsonl")
  sent=$(field "$W/rep.json" sent_to_classifier); read=$(field "$W/rep.json" docs_read); mb=$(field "$W/rep.json" bytes_read)
  b=$(cpu_median "$input" --classifier "$W/lab.cls" --classify all --threads 1 -o "$W/o.jsonl")
  python3 -c "
mb=$mb/1e6; a=$a; b=$b
print(f'  {\"$(basename "$input")\":16s} {mb:6.1f} MB: sent to classifier $sent/$read = {$sent/$read:.3f}; '
      f'ambiguous {mb/a:6.1f} MB/CPU-s, all {mb/b:6.1f} MB/CPU-s, ratio {b/a:.2f}x')"
done

echo "== 2. quality filter + dedup, Frugal vs datatrove, same JSONL ($(du -h "$W/webtext.jsonl" | cut -f1))"
fc=$(cpu_median "$W/webtext.jsonl" --threads 1 -o "$W/frugal_kept.jsonl")
fk=$(field "$W/rep.json" docs_kept); fw=$(field "$W/rep.json" seconds)
"$F" clean "$W/webtext.jsonl" --threads 2 -o "$W/frugal_kept2.jsonl" --report "$W/rep2.json" -q --no-progress
fw2=$(field "$W/rep2.json" seconds)
if [ -z "$peer_missing" ]; then
  dtlog=$BUILD/bench_clean.datatrove.log
  if ! python3 tools/data_datatrove_bench.py "$W/webtext.jsonl" "$W/dt" >"$W/dt.out" 2>"$dtlog"; then
    echo "bench_clean: the datatrove run failed; its log is kept in $dtlog, last lines:" >&2
    tail -n 25 "$dtlog" >&2
    exit 1
  fi
  tail -1 "$W/dt.out" > "$W/dt.json"
  python3 - "$W/dt.json" "$W/webtext.jsonl" "$fc" "$fk" "$fw" "$fw2" <<'PY'
import json, os, sys
d = json.load(open(sys.argv[1])); mb = os.path.getsize(sys.argv[2]) / 1e6
fc, fk, fw, fw2 = float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
print(f"  frugal    (1 thread): {mb/fc:8.2f} MB/CPU-s  ({fc:.2f} CPU-s, {fw:.2f} s wall; 2 threads: {mb/fw2:.1f} MB/s wall), kept {fk}")
print(f"  datatrove (1 worker): {d['mb_per_cpu_s']:8.3f} MB/CPU-s  ({d['cpu_s']:.2f} CPU-s, {d['wall_s']:.2f} s wall), kept {d['kept']}")
print(f"  ratio per core: {mb/fc/d['mb_per_cpu_s']:.1f}x")
PY
else
  echo "  skipped: missing Python modules: $peer_missing (tools/setup_peers.sh installs them)"
fi
