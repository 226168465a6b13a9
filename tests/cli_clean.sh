#!/bin/sh
# cli_clean.sh: `frugal clean` run outside the checkout finds its default rules; an
# output (or rejects file) that is an input is refused and the input left whole; a
# failed or killed run leaves the previous output intact (outputs are committed by
# rename); a second run on a locked output is refused with the holder's pid.
# Usage: sh tests/cli_clean.sh build/frugal   (run by ctest in a fresh temporary directory)
F=${1:?usage: cli_clean.sh FRUGAL}
case $F in /*) ;; *) F=$(pwd)/$F ;; esac
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
unset FG_SOURCE_DIR # nothing may point back at the checkout

i=0
while [ $i -lt 300 ]; do
  echo "{\"text\": \"Document number $i talks about the history of the river valley and the people who farmed it for many generations before the town was built.\"}"
  i=$((i + 1))
done > in.jsonl
cp in.jsonl in.orig

# 1. default rules from the binary's location, not the working directory
"$F" clean -q --no-progress -o first.jsonl in.jsonl > log.txt 2>&1 || fail "clean outside the checkout: $(cat log.txt)"
[ -s first.jsonl.rejects.jsonl ] || fail "clean with the default rules wrote no rejects (the short documents)"
# a copy of the binary away from any build tree (as installed without its data) still
# finds them (the source tree compiled in), and an installed layout PREFIX/bin +
# PREFIX/share/frugal/configs is looked at first (a broken rules file there proves it)
mkdir -p alone prefix/bin prefix/share/frugal/configs
cp "$F" alone/frugal && cp "$F" prefix/bin/frugal
alone/frugal clean -q --no-progress -o alone.jsonl in.jsonl > log.txt 2>&1 || fail "copied binary: $(cat log.txt)"
echo "nonsense directive" > prefix/share/frugal/configs/clean_rules.conf
prefix/bin/frugal clean -q --no-progress -o pre.jsonl in.jsonl > log.txt 2>&1 && fail "installed rules file not used"
grep -q "share/frugal/configs/clean_rules.conf:1" log.txt || fail "installed rules not read first: $(cat log.txt)"
# the rest keeps every document: no rules, no dedup
R="--rules /dev/null --no-dedup --no-progress"
# shellcheck disable=SC2086
"$F" clean -q $R -o out.jsonl in.jsonl > log.txt 2>&1 || fail "clean: $(cat log.txt)"
[ "$(wc -l < out.jsonl)" -eq 300 ] || fail "clean kept $(wc -l < out.jsonl) of 300"
cp out.jsonl good.jsonl

# 2. outputs that are inputs are refused, the input untouched
for args in "-o in.jsonl" "--output=./in.jsonl" "--rejects in.jsonl" "--report in.jsonl" "-o out2.jsonl --rejects out2.jsonl"; do
  # shellcheck disable=SC2086
  "$F" clean -q $args in.jsonl > log.txt 2>&1
  rc=$?
  [ $rc -eq 2 ] || fail "clean $args in.jsonl: exit $rc, want 2"
  grep -q "refusing to overwrite an input\|are the same file" log.txt || fail "clean $args: message: $(cat log.txt)"
  cmp -s in.jsonl in.orig || fail "clean $args in.jsonl changed its input"
done
mkdir -p dir && cp in.jsonl dir/a.jsonl
"$F" clean -q -o dir/kept.jsonl dir > log.txt 2>&1
[ $? -eq 2 ] || fail "output inside the input directory accepted: $(cat log.txt)"

# 3. a failing run leaves the previous output whole and no temporary file
# shellcheck disable=SC2086
"$F" clean -q $R -o out.jsonl in.jsonl /nonexistent/input > log.txt 2>&1 && fail "missing input accepted"
cmp -s out.jsonl good.jsonl || fail "a failed run changed the previous output"
ls out.jsonl.tmp.* > /dev/null 2>&1 && fail "temporary output left behind: $(ls)"

# 4. SIGKILL mid-run: out.jsonl is the old file or the whole new one, never torn
i=0
while [ $i -lt 120 ]; do cat in.jsonl; i=$((i + 1)); done > big.jsonl
# shellcheck disable=SC2086
"$F" clean -q $R -o big_ref.jsonl big.jsonl > /dev/null 2>&1 || fail "reference run"
echo '{"text": "previous good output"}' > out.jsonl
cp out.jsonl prev.jsonl
# shellcheck disable=SC2086
"$F" clean -q $R -o out.jsonl big.jsonl > /dev/null 2>&1 &
pid=$!
sleep 0.2
kill -9 $pid 2> /dev/null
wait $pid 2> /dev/null
cmp -s out.jsonl prev.jsonl || cmp -s out.jsonl big_ref.jsonl || fail "killed run left a torn out.jsonl ($(wc -c < out.jsonl) bytes)"

# 5. the output lock names its holder
sh -c 'echo $$ > locked.jsonl.lock; exec flock locked.jsonl.lock sleep 30' &
holder=$!
n=0
while [ "$(cat locked.jsonl.lock 2> /dev/null)" != "$holder" ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
sleep 0.3
"$F" clean -q -o locked.jsonl in.jsonl > log.txt 2>&1 && fail "locked output accepted"
grep -q "locked by pid $holder" log.txt || fail "lock message does not name pid $holder: $(cat log.txt)"
[ -e locked.jsonl ] && fail "refused run wrote locked.jsonl"
kill $holder 2> /dev/null
wait $holder 2> /dev/null

# 6. a truncated .gz input: warned with its name and counted by default, fatal with
# --fail-on-read-error; --max-file-mb bounds the decoded bytes of one compressed file
head -c 4000 in.jsonl > part.jsonl && gzip -c in.jsonl | head -c 700 > trunc.jsonl.gz
# shellcheck disable=SC2086
"$F" clean -q $R -o tr.jsonl trunc.jsonl.gz > log.txt 2>&1 || fail "truncated .gz failed the run by default: $(cat log.txt)"
grep -q "trunc.jsonl.gz" log.txt || fail "truncated .gz not named: $(cat log.txt)"
# shellcheck disable=SC2086
"$F" clean -q $R --fail-on-read-error -o tr2.jsonl trunc.jsonl.gz > log.txt 2>&1 && fail "--fail-on-read-error accepted a truncated .gz"
grep -q "trunc.jsonl.gz.*byte" log.txt || fail "fatal read error does not name the file and byte: $(cat log.txt)"
[ -e tr2.jsonl ] && fail "failed run left tr2.jsonl"
"$F" clean -q --max-file-mb abc -o x.jsonl in.jsonl > log.txt 2>&1 && fail "--max-file-mb abc accepted"
grep -q -- "--max-file-mb" log.txt || fail "bad --max-file-mb not named: $(cat log.txt)"
gzip -c in.jsonl > big.jsonl.gz
# shellcheck disable=SC2086
"$F" clean -q $R --max-file-mb 0.01 --report rep.json -o mf.jsonl big.jsonl.gz > log.txt 2>&1 || fail "max-file-mb run: $(cat log.txt)"
grep -q "file_too_large" mf.jsonl.rejects.jsonl || fail "--max-file-mb did not stop the file: $(head -c 300 mf.jsonl.rejects.jsonl)"

[ $fails -eq 0 ] && echo "cli_clean: all passed" && exit 0
echo "cli_clean: $fails failed"
exit 1
