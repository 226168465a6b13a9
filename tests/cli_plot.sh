#!/bin/sh
# cli_plot.sh: `frugal plot` draws two tiny runs (one dense, one MoE) overlaid to SVG and
# PNG through gnuplot, names a missing gnuplot or run directory clearly, and the synth
# command writes its kept text and counts. Skips (77) without gnuplot.
# Usage: sh tests/cli_plot.sh build/frugal   (run by ctest in a fresh temporary directory)
F=${1:?usage: cli_plot.sh FRUGAL}
case $F in /*) ;; *) F=$(pwd)/$F ;; esac
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# a missing gnuplot is named, with the package to install, before anything is read
"$F" plot nowhere --gnuplot /nonexistent/gnuplot > out.txt 2>&1 && fail "missing gnuplot: exit 0"
grep -q "/nonexistent/gnuplot not found" out.txt && grep -q "gnuplot-nox" out.txt ||
  fail "missing gnuplot message: $(cat out.txt)"
if ! command -v gnuplot >/dev/null 2>&1; then
  echo "cli_plot: SKIP: gnuplot is not installed (apt-get install gnuplot-nox; scripts/deps.sh does)"
  exit 77
fi

awk 'BEGIN { srand(3); split("the a my our", d, " "); split("cat king moon sword city", n, " ");
             split("sees keeps finds takes", v, " ");
             for (i = 0; i < 1500; i++) printf "%s %s %s %s %s.\n", d[int(rand()*4)+1], n[int(rand()*5)+1],
                                                 v[int(rand()*4)+1], d[int(rand()*4)+1], n[int(rand()*5)+1] }' > corpus.txt
common="--data corpus.txt --tokenizer byte --n-layer 1 --d-model 32 --n-head 2 --batch-size 4 --seq-len 64
        --max-steps 12 --val-every 4 --val-batches 2 --log-every 100 --threads 2"
# shellcheck disable=SC2086
"$F" train $common --out dense > train1.txt 2>&1 || fail "train dense: $(tail -3 train1.txt)"
# shellcheck disable=SC2086
"$F" train $common --n-expert 4 --n-expert-active 2 --d-expert 32 --out moe > train2.txt 2>&1 ||
  fail "train moe: $(tail -3 train2.txt)"

"$F" plot dense moe --out both > plot.txt 2>&1 || fail "plot: $(cat plot.txt)"
grep -q "plot: dense: 12 steps, 4 validations" plot.txt || fail "dense counts: $(cat plot.txt)"
grep -q "plot: moe: 12 steps, 4 validations, MoE" plot.txt || fail "moe counts: $(cat plot.txt)"
[ "$(head -c 8 both.png | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "both.png is not a PNG"
grep -q "<svg" both.svg || fail "both.svg is not an SVG"
# both runs in each panel, the expert-load row present for the MoE run, val points drawn
grep -q "run1.train.dat' using 2:7" both.gp || fail "no expert load against seconds in the script"
[ "$(grep -c "run0.val.dat" both.gp)" -eq 4 ] || fail "dense validation points: $(grep -c run0.val.dat both.gp) plot clauses"
grep -q ">dense (val)<" both.svg && grep -q ">moe<" both.svg || fail "legend lacks the run names"
# the default output goes into the first run's directory
"$F" plot dense > plot1.txt 2>&1 && [ -s dense/plot.png ] && [ -s dense/plot.svg ] ||
  fail "default output: $(cat plot1.txt)"
grep -q "expert load" dense/plot.gp && fail "a dense run alone gets an expert-load row"
# not a run directory: named
"$F" plot nowhere > bad.txt 2>&1 && fail "missing run: exit 0"
grep -q "nowhere/metrics.jsonl: cannot open" bad.txt || fail "missing run message: $(cat bad.txt)"

# synth: samples, a discriminator verdict, kept text and its counts (JSON)
"$F" synth --run dense --out kept.txt --n-samples 24 --n 40 --threads 2 --scores scores.jsonl > synth.txt 2>&1 ||
  fail "synth: $(cat synth.txt)"
grep -q "synth: kept [0-9]* of 24 samples (kept fraction" synth.txt || fail "synth summary: $(cat synth.txt)"
grep -q '"generated": 24' kept.txt.json && grep -q '"kept_frac"' kept.txt.json || fail "kept.txt.json: $(cat kept.txt.json)"
[ "$(wc -l < scores.jsonl)" -eq 24 ] || fail "scores.jsonl: $(wc -l < scores.jsonl) lines"
"$F" synth --run dense --out kept2.txt --n-samples 24 --n 40 --threads 1 --scores scores2.jsonl > /dev/null 2>&1
cmp -s scores.jsonl scores2.jsonl || fail "synth on 1 and 2 threads differ"

[ $fails -eq 0 ] && echo "cli_plot: ok" || { echo "cli_plot: $fails failed"; exit 1; }
