#!/usr/bin/env bash
# bench_classify_tf.sh: the transformer quality classifier (issue 16, must-show 3), every
# figure from this one run:
#  1. accuracy on the held-out split of the labeled web segments (tools/data_make_labeled.py
#     --window 1, the set of bench/bench_clean.sh; split by page): the pipeline's
#     heuristics only, and ambiguous-only / classify-all with the linear and with the
#     transformer classifier (both trained on the train split);
#  2. throughput of --classify ambiguous vs --classify all with the transformer (and the
#     linear model, for comparison) on the shared web samples and on their text as JSONL,
#     1 thread, MB of input per CPU-second, median of REPS runs.
# usage: bench/bench_classify_tf.sh [BUILD_DIR]   (needs ../shared/data and python3 for the
#        labeled set; TF_ARGS="--layers 2 ..." passes options to train-classifier --kind
#        transformer). Training the transformer takes 3-4 CPU-minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
F=$BUILD/frugal
SHARED=${FG_SHARED_DIR:-../shared}/data
[ -x "$F" ] || { echo "bench_classify_tf: $F not built (cmake --build $BUILD --target frugal)"; exit 2; }
[ -d "$SHARED/web" ] || { echo "bench_classify_tf: $SHARED/web not found"; exit 2; }
W=$(mktemp -d /tmp/bench_classify_tf.XXXXXX)
trap 'rm -rf "$W"' EXIT
REPS=${REPS:-3}
TF_ARGS=${TF_ARGS:-}
. bench/clean_util.sh

echo "== inputs"
make_web_inputs
"$F" clean train-classifier --input "$W/lab.train.jsonl" -o "$W/lin.cls" --test-frac 0 | grep -E "trained"
# shellcheck disable=SC2086 # TF_ARGS is a list of options
"$F" clean train-classifier --kind transformer --input "$W/lab.train.jsonl" -o "$W/tf.cls" --test-frac 0 $TF_ARGS \
  2>/dev/null | grep -E "trained"
echo "web samples: $(du -sh "$SHARED/web" | cut -f1) on disk; text corpus (HTML stripped, x4): $(du -h "$W/webtext.jsonl" | cut -f1)"

echo "== 1. accuracy on the labeled test split (classifiers trained on the train split; same rules, dedup off)"
for k in lin tf; do
  for m in none ambiguous all; do
    [ "$k" = tf ] && [ "$m" = none ] && continue # the same run as the linear one
    "$F" clean "$W/lab.test.jsonl" --classifier "$W/$k.cls" --classify "$m" --eval-label label --no-dedup \
        --threads 1 -o "$W/lab.$k.$m.jsonl" --report "$W/lab.$k.$m.json" -q --no-progress
    python3 - "$W/lab.$k.$m.json" "$k" "$m" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
k = {"lin": "linear", "tf": "transformer"}[sys.argv[2]]
m = sys.argv[3]
name = "heuristics only" if m == "none" else f"{k} {m}"
print(f"  {name:28s} accuracy {r['label_correct']/r['labeled']:.4f} on {r['labeled']} segments, "
      f"sent to classifier {r['sent_to_classifier']}/{r['docs_read']}, {r['cpu_seconds']:.3f} CPU-s")
PY
  done
done
echo "== 2. ambiguous-only vs classify-all throughput (1 thread, median of $REPS, MB of input per CPU-second)"
for k in tf lin; do
  for input in "$SHARED/web" "$W/webtext.jsonl"; do
    a=$(cpu_median "$input" --classifier "$W/$k.cls" --classify ambiguous --threads 1 -o "$W/o.jsonl")
    sent=$(field "$W/rep.json" sent_to_classifier); read=$(field "$W/rep.json" docs_read); mb=$(field "$W/rep.json" bytes_read)
    b=$(cpu_median "$input" --classifier "$W/$k.cls" --classify all --threads 1 -o "$W/o.jsonl")
    python3 -c "
mb=$mb/1e6; a=$a; b=$b
k={'lin':'linear','tf':'transformer'}['$k']
print(f'  {k:11s} {\"$(basename "$input")\":16s} {mb:6.1f} MB: sent to classifier $sent/$read = {$sent/$read:.3f}; '
      f'ambiguous {mb/a:6.2f} MB/CPU-s, all {mb/b:6.2f} MB/CPU-s, ratio {b/a:.2f}x')"
  done
done
