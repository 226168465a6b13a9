#!/usr/bin/env bash
# spec_decode.sh: the speculative-decoding speed-up of MTP (issue 15): a model with one MTP
# module (trained here, or RUN=an existing run with mtp_depth >= 1, e.g. the ablation's
# loss-mtp-s1), then `frugal sample --speculative --temperature 0`, which decodes the same
# prompts plainly greedy and speculatively (module 1 drafts one token, one two-row main
# pass verifies it) in one process, checks that the tokens agree, and reports the draft
# acceptance rate, tokens per main-model pass and both tokens/s; summed over the prompts
# into one line.
# Take the speed-up on a quiet machine (the acceptance rate does not depend on the load).
# Usage: bench/spec_decode.sh [BUILD_DIR=build] [OUT_DIR=runs/spec_decode]
# Env: RUN (train one: empty), STEPS (300), THREADS (all cores), LAYERS (8), DMODEL (256),
#   HEADS (4), SEQ (64), BATCH (8), LR (0.002), SEED (1), MTP_LAMBDA (0.3), EXTRA (flags
#   added to the training), N (tokens per sample: capped by sample at one context window),
#   SAMPLES (4: repeats per prompt, for the timing), NPROMPTS (4), PROMPT (empty: two words
#   of NPROMPTS lines of the held-out tail of DATA), DATA
#   (../shared/data/tinyshakespeare.txt), TOKENIZER (../shared/data/gpt2, or byte).
set -euo pipefail
build=${1:-build}
out=${2:-runs/spec_decode}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$build/frugal
threads=${THREADS:-$(nproc)}
steps=${STEPS:-300}
L=${LAYERS:-8}
C=${DMODEL:-256}
NH=${HEADS:-4}
T=${SEQ:-64}
B=${BATCH:-8}
lr=${LR:-0.002}
seed=${SEED:-1}
lam=${MTP_LAMBDA:-0.3}
n=${N:-1000000}
samples=${SAMPLES:-4}
nprompts=${NPROMPTS:-4}
prompt=${PROMPT:-}
data=${DATA:-$root/../shared/data/tinyshakespeare.txt}
tok=${TOKENIZER:-$root/../shared/data/gpt2}
read -r -a extra <<< "${EXTRA:-}"
[ -x "$bin" ] || { echo "spec_decode: $bin is not built" >&2; exit 2; }
mkdir -p "$out"
run=${RUN:-}
if [ -z "$run" ]; then
  [ -f "$data" ] || { echo "spec_decode: no corpus at $data (../shared/data; set DATA=...)" >&2; exit 2; }
  [ "$tok" = byte ] || [ -e "$tok" ] || { echo "spec_decode: no tokenizer at $tok (set TOKENIZER=...)" >&2; exit 2; }
  run=$out/mtp
  rm -rf "$run"
  echo "spec_decode: training gpt2 L=$L C=$C NH=$NH T=$T B=$B, MTP D=1 lambda $lam, $steps steps, $threads threads"
  "$bin" train --layout gpt2 --n-layer "$L" --d-model "$C" --n-head "$NH" --seq-len "$T" --batch-size "$B" \
    --data "$data" --tokenizer "$tok" --val-frac 0.01 --val-every 0 --val-batches 1 --max-steps "$steps" \
    --warmup-steps $((steps / 10)) --lr "$lr" --min-lr "$(awk -v l="$lr" 'BEGIN{print l/10}')" --seed "$seed" \
    --threads "$threads" --log-every 100 --mtp-depth 1 --mtp-lambda "$lam" --out "$run" "${extra[@]}" \
    > "$out/train.log" 2>&1 || { echo "spec_decode: training failed: $(tail -3 "$out/train.log")" >&2; exit 1; }
fi
[ -d "$run" ] || { echo "spec_decode: no run directory $run" >&2; exit 2; }
# the prompts: PROMPT, or the first two words of the first NPROMPTS lines of over 30
# characters in the last 60,000 bytes of the corpus (the part bench/ablation.sh holds out).
# Short, because the speculative path feeds the prompt token by token (main model and
# module 1; plain greedy prefills it in one pass) inside its timed part: a prompt long
# next to the generated tokens measures that, not the drafting. Greedy decoding of one
# prompt is the same every sample, so SAMPLES only repeats it for the timing.
prompts=()
if [ -n "$prompt" ]; then
  prompts=("$prompt")
else
  [ -f "$data" ] || { echo "spec_decode: no corpus at $data for the prompts (set DATA= or PROMPT=)" >&2; exit 2; }
  mapfile -t prompts < <(tail -c 60000 "$data" | awk -v n="$nprompts" 'length($0) > 30 && NF >= 2 && k < n { print $1 " " $2; k++ }')
fi
echo "spec_decode: ${#prompts[@]} prompts x $samples samples, $threads threads ($(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg))"
: > "$out/samples.txt"
: > "$out/summary.txt"
for p in "${prompts[@]}"; do
  "$bin" sample --run "$run" --speculative --temperature 0 --threads "$threads" --n "$n" --num-samples "$samples" \
    --prompt "$p" >> "$out/samples.txt" 2> "$out/sample.err" ||
    { echo "spec_decode: sample failed: $(tail -3 "$out/sample.err")" >&2; exit 1; }
  grep 'differ from token' "$out/sample.err" >&2 || true
  line=$(grep '^sample: speculative decoding' "$out/sample.err" || true)
  [ -n "$line" ] || { echo "spec_decode: no summary line in $out/sample.err" >&2; exit 1; }
  echo "$line" >> "$out/summary.txt"
done
# per prompt: "... A of D drafts accepted (P%), X tokens per main-model pass; S tokens/s vs plain
# greedy G tokens/s: speed-up Rx; K of N samples differ"; summed: tokens = X D, time = tokens / rate
sed -n 's/.*: \([0-9]*\) of \([0-9]*\) drafts accepted ([0-9.]*%), \([0-9.]*\) tokens per main-model pass; \([0-9.]*\) tokens\/s vs plain greedy \([0-9.]*\) tokens\/s: speed-up [0-9.]*x; \([0-9]*\) of \([0-9]*\) samples differ/\1 \2 \3 \4 \5 \6 \7/p' \
  "$out/summary.txt" | awk '
  { a += $1; d += $2; t = $3 * $2; tok += t; ts += t / $4; tp += t / $5; diff += $6; ns += $7 }
  END { if (d == 0 || ts == 0) { print "spec_decode: nothing drafted"; exit 1 }
    printf "spec_decode: acceptance %.1f%% (%d of %d drafts), %.2f tokens per main pass; speculative %.1f tokens/s vs greedy %.1f tokens/s: speed-up %.2fx; %d of %d samples differ from greedy\n",
      100 * a / d, a, d, tok / d, tok / ts, tok / tp, tp / ts, diff, ns }'
echo "spec_decode: samples in $out/samples.txt, per prompt in $out/summary.txt, run $run"
