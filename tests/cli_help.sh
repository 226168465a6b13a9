#!/bin/sh
# cli_help.sh: every subcommand (and sub-subcommand) answers --help / -h on stdout with
# exit 0; a bad value for any knob names the knob and exits 2; an unknown flag is named.
# Usage: sh tests/cli_help.sh build/frugal   (run by ctest in a fresh temporary directory)
F=${1:?usage: cli_help.sh FRUGAL}
case $F in /*) ;; *) F=$(pwd)/$F ;; esac
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

for c in "" "train" "sample" "tokenize" "tokenize train" "tokenize encode" "tokenize decode" "clean" \
         "clean train-classifier" "ckpt" "ckpt info" "ckpt verify" "ckpt diff" "convert" "bench" "hw"; do
  for h in --help -h; do
    # shellcheck disable=SC2086 # word splitting of the subcommand is wanted
    "$F" $c $h > out.txt 2> err.txt
    rc=$?
    [ $rc -eq 0 ] || fail "frugal $c $h: exit $rc"
    [ -s out.txt ] || fail "frugal $c $h: nothing on stdout"
    [ -s err.txt ] && fail "frugal $c $h: stderr: $(head -c 200 err.txt)"
    grep -q "usage" out.txt || fail "frugal $c $h: no usage line"
  done
done

# bad value -> exit 2 and a message naming the knob
expect_bad() { # NEEDLE ARGS...
  needle=$1
  shift
  "$@" > out.txt 2> err.txt
  rc=$?
  [ $rc -eq 2 ] || fail "$* : exit $rc, want 2"
  grep -q -- "$needle" err.txt || fail "$* : message does not name $needle: $(head -c 300 err.txt)"
}
echo '{"text": "a b c"}' > in.jsonl
expect_bad --epochs "$F" clean train-classifier --epochs abc --input in.jsonl -o m.cls
expect_bad --lr "$F" clean train-classifier --lr -1 --input in.jsonl -o m.cls
expect_bad --char-ngrams "$F" clean train-classifier --char-ngrams 3 --input in.jsonl -o m.cls
expect_bad --test-frac "$F" clean train-classifier --test-frac 1.5 --input in.jsonl -o m.cls
expect_bad --threshold "$F" clean --threshold abc in.jsonl
expect_bad --jaccard "$F" clean --jaccard 2 in.jsonl
expect_bad --num-perm "$F" clean --num-perm 12x in.jsonl
expect_bad --max-doc-mb "$F" clean --max-doc-mb=-1 in.jsonl
expect_bad --classify "$F" clean --classify sometimes in.jsonl
expect_bad --bogus "$F" clean --bogus in.jsonl
expect_bad --vocab-size "$F" tokenize train --vocab-size abc --out t.json in.jsonl
expect_bad --min-frequency "$F" tokenize train --min-frequency -3 --out t.json in.jsonl
expect_bad --pattern "$F" tokenize train --pattern gpt5 --out t.json in.jsonl
expect_bad --val-frac "$F" tokenize encode --val-frac abc --tokenizer byte --out x.bin in.jsonl
expect_bad --shard-tokens "$F" tokenize encode --shard-tokens 0 --tokenizer byte --out x in.jsonl
expect_bad --threads "$F" tokenize encode --threads two --tokenizer byte --out x.bin in.jsonl
expect_bad --vocab-size "$F" tokenize encode --vocab-size 5 --tokenizer byte --out x.bin in.jsonl
expect_bad --n "$F" sample --run nowhere --n abc
expect_bad --top-p "$F" sample --run nowhere --top-p 2
expect_bad --seed "$F" sample --run nowhere --seed -1
expect_bad --iters "$F" bench --iters abc
expect_bad --warmup-iters "$F" bench --warmup-iters=x
expect_bad --threads "$F" hw --threads abc
expect_bad --frm-llmc "$F" convert --frm-llmc x.bin
expect_bad --bogus "$F" ckpt info --bogus x
expect_bad --lr "$F" train --lr abc
expect_bad FG_LOG_LEVEL env FG_LOG_LEVEL=loud "$F" hw

# --kernels is accepted wherever kernels run (sample checks it before loading the run)
"$F" hw --kernels=ref > out.txt 2>&1 || fail "hw --kernels=ref: $(tail -c 300 out.txt)"
"$F" sample --kernels=ref --run nowhere > out.txt 2>&1
grep -q "kernels" out.txt && fail "sample --kernels=ref refused: $(head -c 300 out.txt)"
expect_bad "kernels" "$F" sample --kernels=nonsense --run nowhere

# no BLAS thread pool started at load (OpenBLAS's pthreads build sizes it from
# OPENBLAS_NUM_THREADS before main; the CLI runs itself with 1 unless the user set it)
env -u OPENBLAS_NUM_THREADS "$F" hw > hw.txt 2>&1 || fail "hw: $(cat hw.txt)"
grep -q "process threads at start: 1)" hw.txt || fail "a thread pool started at load: $(grep 'threads:' hw.txt)"
OPENBLAS_NUM_THREADS=2 "$F" hw > hw2.txt 2>&1 || fail "hw: $(cat hw2.txt)"
grep -q "process threads at start: 2)" hw2.txt || echo "note: OPENBLAS_NUM_THREADS=2 started no pool (not the pthreads OpenBLAS): $(grep 'threads:' hw2.txt)"

[ $fails -eq 0 ] && echo "cli_help: all passed" && exit 0
echo "cli_help: $fails failed"
exit 1
