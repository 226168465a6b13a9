# shellcheck shell=bash
# clean_util.sh: sourced by bench_clean.sh and bench_classify_tf.sh (after they set F, W,
# SHARED and REPS): the JSON report reader, the median CPU time of `frugal clean`, and the
# inputs both measure on (the web samples' text x4, the labelled split of issue 4's set).

field() { python3 -c "import json,sys; print(json.load(open('$1'))['$2'])"; }

# median CPU seconds over REPS runs of `frugal clean ARGS`; leaves the last report in $W/rep.json
cpu_median() {
  local xs=()
  for _ in $(seq "$REPS"); do
    "$F" clean "$@" --report "$W/rep.json" -q --no-progress
    xs+=("$(field "$W/rep.json" cpu_seconds)")
  done
  printf '%s\n' "${xs[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

# $W/webtext.jsonl (the web samples' extracted text, 4 times) and $W/lab.{train,test}.jsonl
make_web_inputs() {
  "$F" clean "$SHARED/web" --rules configs/clean_rules_extract.conf --no-dedup -o "$W/webtext1.jsonl" -q --no-progress
  for _ in 1 2 3 4; do cat "$W/webtext1.jsonl"; done > "$W/webtext.jsonl"
  python3 tools/data_make_labeled.py "$(dirname "$SHARED/x")" "$W/lab" --window 1
}
