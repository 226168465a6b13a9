#!/bin/sh
# cli_tokenize.sh: `frugal tokenize` through the CLI: the GPT-2 test vectors (all 157,
# the two with allowed_special "all" through --allowed-special), --print one line per
# document, a lone surrogate rejecting its line only (named file:line), an input
# with no tokens refused without writing, an output that is an input refused, and
# the output lock naming its holder.
# Usage: sh tests/cli_tokenize.sh build/frugal   (run by ctest in a fresh temporary directory)
F=${1:?usage: cli_tokenize.sh FRUGAL}
case $F in /*) ;; *) F=$(pwd)/$F ;; esac
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# 1. GPT-2 vectors (skipped without ../shared)
G=${FG_SHARED_DIR:-}/data/gpt2
if [ -n "${FG_SHARED_DIR:-}" ] && [ -f "$G/test_vectors.jsonl" ]; then
  grep -v '"allowed_special"' "$G/test_vectors.jsonl" > plain.jsonl
  grep '"allowed_special": "all"' "$G/test_vectors.jsonl" > special.jsonl
  [ "$(wc -l < special.jsonl)" -eq 2 ] || fail "expected 2 allowed_special vectors"
  for f in plain special; do
    sed 's/.*"ids": \[\([0-9, ]*\)\].*/\1/' $f.jsonl | tr -d ',' > $f.want
    extra=
    [ $f = special ] && extra="--allowed-special all"
    # shellcheck disable=SC2086
    "$F" tokenize encode --tokenizer "$G" --no-eot --print $extra $f.jsonl > $f.got 2> log.txt || fail "encode $f: $(cat log.txt)"
    cmp -s $f.got $f.want || fail "GPT-2 vectors ($f) differ: $(diff $f.got $f.want | head -5)"
  done
  # without --allowed-special the special text is ordinary text (tiktoken's default is to refuse it; ours encodes it)
  "$F" tokenize encode --tokenizer "$G" --no-eot --print special.jsonl > nospecial.got 2> /dev/null
  grep -q 50256 nospecial.got && fail "<|endoftext|> became 50256 without --allowed-special"
  # a list names the tokens; an unknown one is refused by name
  "$F" tokenize encode --tokenizer "$G" --no-eot --print --allowed-special '<|endoftext|>' special.jsonl > list.got 2> /dev/null
  cmp -s list.got special.want || fail "--allowed-special '<|endoftext|>' differs from all"
  "$F" tokenize encode --tokenizer "$G" --print --allowed-special '<|im_start|>' special.jsonl > /dev/null 2> log.txt
  rc=$?
  if [ $rc -ne 2 ] || ! grep -q "im_start" log.txt; then fail "unknown special accepted: exit $rc: $(cat log.txt)"; fi
else
  echo "cli_tokenize: SKIP GPT-2 vectors (FG_SHARED_DIR/data/gpt2 absent)"
fi

# 2. --print: one line per document, <|endoftext|> (byte tokenizer: 256) ending each
printf '{"text": "ab"}\n{"text": ""}\n{"text": "c"}\n' > three.jsonl
"$F" tokenize encode --tokenizer byte --print three.jsonl > p.got 2> /dev/null || fail "--print"
printf '97 98 256\n256\n99 256\n' > p.want
cmp -s p.got p.want || fail "--print lines: $(cat p.got)"

# 3. a lone surrogate rejects its line, named, and the rest is encoded
printf '{"text": "a"}\n{"text": "\\ud800"}\n{"text": "b"}\n' > sur.jsonl
"$F" tokenize encode --tokenizer byte --print sur.jsonl > s.got 2> log.txt
rc=$?
[ $rc -eq 0 ] || fail "lone surrogate stopped the encode: exit $rc: $(cat log.txt)"
printf '97 256\n98 256\n' > s.want
cmp -s s.got s.want || fail "surrogate: other documents: $(cat s.got)"
grep -q "sur.jsonl:2" log.txt || fail "surrogate: no file:line in '$(cat log.txt)'"
grep -q "1 records skipped" log.txt || fail "surrogate: not counted: $(cat log.txt)"

# 4. no tokens at all: refused, nothing written (an empty shard would fail later)
printf '{"text": ""}\n' > empty.jsonl
"$F" tokenize encode --tokenizer byte --no-eot --out e.bin empty.jsonl > log.txt 2>&1
rc=$?
[ $rc -ne 0 ] || fail "empty input with --no-eot: exit 0: $(cat log.txt)"
grep -q "into e.bin" log.txt && fail "claims to have written e.bin"
grep -q "no tokens" log.txt || fail "empty input: message: $(cat log.txt)"
[ -e e.bin ] && fail "empty input wrote e.bin"
"$F" tokenize encode --tokenizer byte --out e.bin empty.jsonl > log.txt 2>&1 || fail "eot-only input: $(cat log.txt)"
[ -s e.bin ] || fail "eot-only input wrote no e.bin"

# 5. an output that is an input is refused
cp three.jsonl keep.jsonl
"$F" tokenize encode --tokenizer byte --out three.jsonl three.jsonl > log.txt 2>&1
[ $? -eq 2 ] || fail "encode --out INPUT accepted: $(cat log.txt)"
cmp -s three.jsonl keep.jsonl || fail "encode --out INPUT changed the input"

# 6. the output lock names its holder
sh -c 'echo $$ > busy.bin.lock; exec flock busy.bin.lock sleep 30' &
holder=$!
n=0
while [ "$(cat busy.bin.lock 2> /dev/null)" != "$holder" ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
sleep 0.3
"$F" tokenize encode --tokenizer byte --out busy.bin three.jsonl > log.txt 2>&1 && fail "locked output accepted"
grep -q "locked by pid $holder" log.txt || fail "lock message does not name pid $holder: $(cat log.txt)"
[ -e busy.bin ] && fail "refused run wrote busy.bin"
kill $holder 2> /dev/null
wait $holder 2> /dev/null
# a shard directory is locked by DIR/.frugal.lock, as a training run directory is
mkdir -p busydir
sh -c 'echo $$ > busydir/.frugal.lock; exec flock busydir/.frugal.lock sleep 30' &
holder=$!
n=0
while [ "$(cat busydir/.frugal.lock 2> /dev/null)" != "$holder" ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
sleep 0.3
"$F" tokenize encode --tokenizer byte --out busydir three.jsonl > log.txt 2>&1 && fail "locked directory accepted"
grep -q "locked by pid $holder" log.txt || fail "directory lock message does not name pid $holder: $(cat log.txt)"
[ -e busydir/shard_000000.bin ] && fail "refused run wrote a shard"
kill $holder 2> /dev/null
wait $holder 2> /dev/null

# 7. train reads through the same reader; decode round-trips
i=0
while [ $i -lt 50 ]; do echo "{\"text\": \"the cat sat on the mat number $i\"}"; i=$((i + 1)); done > corpus.jsonl
"$F" tokenize train --vocab-size 300 --out tok.json corpus.jsonl > log.txt 2>&1 || fail "train: $(cat log.txt)"
"$F" tokenize encode --tokenizer tok.json --no-eot --out c.bin three.jsonl > log.txt 2>&1 || fail "encode: $(cat log.txt)"
"$F" tokenize decode --tokenizer tok.json --out c.txt c.bin > log.txt 2>&1 || fail "decode: $(cat log.txt)"
[ "$(cat c.txt)" = "abc" ] || fail "decode round trip: '$(cat c.txt)'"

# 6. reader limits: a truncated .gz is skipped and named by default, fatal with
# --fail-on-read-error; an oversized document is skipped (doc_too_large), not read whole
printf '{"text": "%s"}\n' "$(head -c 3000 /dev/zero | tr '\0' a)" > long.jsonl
i=0; while [ $i -lt 200 ]; do echo '{"text": "a line of text to compress"}'; i=$((i + 1)); done > many.jsonl
gzip -c many.jsonl | head -c 60 > cut.jsonl.gz
"$F" tokenize encode --tokenizer byte --print cut.jsonl.gz > /dev/null 2> log.txt || fail "truncated .gz failed encode by default: $(cat log.txt)"
grep -q "cut.jsonl.gz" log.txt || fail "truncated .gz not named: $(cat log.txt)"
"$F" tokenize encode --tokenizer byte --print --fail-on-read-error cut.jsonl.gz > /dev/null 2> log.txt && fail "--fail-on-read-error accepted a truncated .gz"
grep -q "cut.jsonl.gz.*byte" log.txt || fail "fatal read error not located: $(cat log.txt)"
"$F" tokenize encode --tokenizer byte --print --max-doc-mb 0.001 long.jsonl three.jsonl > lim.got 2> log.txt || fail "--max-doc-mb: $(cat log.txt)"
[ "$(wc -l < lim.got)" -eq 3 ] || fail "--max-doc-mb: expected the 3 short documents only, got $(wc -l < lim.got) lines"

[ $fails -eq 0 ] && echo "cli_tokenize: all passed" && exit 0
echo "cli_tokenize: $fails failed"
exit 1
