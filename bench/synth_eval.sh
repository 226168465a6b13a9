#!/usr/bin/env bash
# synth_eval.sh: issue 17's synthetic-data measurement: 5% of the real training text plus
# filtered synthetic text, against 5% real alone and against 100% real, per seed; the
# validation loss of each (best/ checkpoint, on the whole held-out text) and the
# discriminator's kept fraction. Loss figures only (no timings).
#
# Usage: bench/synth_eval.sh [--frugal build/frugal] [--data FILE] [--out DIR] [--seeds "1 2"]
#                            [--frac 0.05] [--ratio 0.5] [--samples 1000] [--steps 600] [--quick]
# Split (by lines): the last 10% of the lines of --data (default ../shared/data/
# tinyshakespeare.txt) are the validation text of every arm; the first --frac of the
# other lines is the small real set. Arms, each trained --steps steps with the same model,
# schedule and seed (byte tokens; models and flags below):
#   full    100% of the training lines
#   small   the small set alone
#   synth   the small set + `frugal synth` samples of the small arm's best model, filtered
#           by the discriminator against the small set itself (--real: the only real text
#           this regime owns; the validation text is never shown to the discriminator),
#           mixed at --synth-ratio (--ratio) of the training tokens
#   unfilt  the control: the same samples, every one kept (--threshold 0), same ratio
# Each training file is TRAIN + VAL with val_frac set so that the trainer's own held-out
# tail is exactly VAL (keep_best picks best/ on it); the reported loss is `frugal sample
# --eval VAL` of best/ (every window of VAL).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
F=$root/build/frugal
data=$root/../shared/data/tinyshakespeare.txt
out=runs/synth_eval
seeds="1 2"
frac=0.05 ratio=0.5 samples=1000 steps=600
model="--layout gpt2 --n-layer 4 --d-model 128 --n-head 4 --batch-size 8 --seq-len 128"
while [ $# -gt 0 ]; do
  case $1 in
    --frugal) F=$2; shift ;;
    --data) data=$2; shift ;;
    --out) out=$2; shift ;;
    --seeds) seeds=$2; shift ;;
    --frac) frac=$2; shift ;;
    --ratio) ratio=$2; shift ;;
    --samples) samples=$2; shift ;;
    --steps) steps=$2; shift ;;
    --quick) steps=150 samples=200 model="--layout gpt2 --n-layer 2 --d-model 64 --n-head 2 --batch-size 8 --seq-len 64" ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "synth_eval.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$F" ] || { echo "synth_eval.sh: $F is not an executable (build first, or give --frugal)" >&2; exit 2; }
[ -f "$data" ] || { echo "synth_eval.sh: no data: $data (give --data FILE)" >&2; exit 2; }
mkdir -p "$out"
n=$(wc -l < "$data")
n_val=$((n / 10))
n_train=$((n - n_val))
n_small=$(awk -v n=$n_train -v f="$frac" 'BEGIN { printf "%d", n * f }')
head -n $n_train "$data" > "$out/train_full.txt"
tail -n $n_val "$data" > "$out/val.txt"
head -n "$n_small" "$out/train_full.txt" > "$out/train_small.txt"
T=$(printf '%s\n' "$model" | sed -n 's/.*--seq-len \([0-9]*\).*/\1/p')

# FILE = TRAIN + VAL, and the val_frac that puts the trainer's cut inside TRAIN's last
# line (it then moves forward to that line's end, the start of VAL): half a line short of
# the boundary, far above float rounding.
with_val() { # TRAIN OUT -> prints val_frac
  cat "$1" "$out/val.txt" > "$2"
  awk -v len="$(wc -c < "$2")" -v tr="$(wc -c < "$1")" -v last="$(tail -n 1 "$1" | wc -c)" \
    'BEGIN { printf "%.9g", (len - (tr - last / 2)) / len }'
}
vf_full=$(with_val "$out/train_full.txt" "$out/full.txt")
vf_small=$(with_val "$out/train_small.txt" "$out/small.txt")

train() { # NAME SEED FILE VAL_FRAC [FLAGS...]
  local name=$1 seed=$2 file=$3 vf=$4; shift 4
  # shellcheck disable=SC2086
  "$F" train $model --data "$file" --val-frac "$vf" --tokenizer byte --max-steps "$steps" --warmup-steps 30 \
    --lr 3e-3 --min-lr 3e-4 --val-every 25 --val-batches 8 --log-every 1000 --seed "$seed" --overwrite 1 \
    --out "$out/$name" "$@" > "$out/$name.log" 2>&1 || { echo "synth_eval: $name failed: $(tail -3 "$out/$name.log")" >&2; exit 1; }
  "$F" sample --run "$out/$name" --ckpt "$out/$name/best" --eval "$out/val.txt" 2>&1 |
    sed -n 's/^eval: .* loss \([0-9.]*\),.*/\1/p'
}

echo "synth_eval: $data: $n_train training lines ($(wc -c < "$out/train_full.txt") bytes), small set $n_small lines" \
     "($(wc -c < "$out/train_small.txt") bytes, $frac), validation $n_val lines; $steps steps; model: $model"
rows=()
for s in $seeds; do
  l_full=$(train "full_s$s" "$s" "$out/full.txt" "$vf_full")
  l_small=$(train "small_s$s" "$s" "$out/small.txt" "$vf_small")
  "$F" synth --run "$out/small_s$s" --ckpt "$out/small_s$s/best" --out "$out/kept_s$s.txt" --real "$out/train_small.txt" \
    --n-samples "$samples" --n $((T - 1)) --seed "$s" > "$out/gen_s$s.log" 2>&1 ||
    { echo "synth_eval: synth failed: $(tail -3 "$out/gen_s$s.log")" >&2; exit 1; }
  kept=$(sed -n 's/.*"kept_frac": \([0-9.]*\).*/\1/p' "$out/kept_s$s.txt.json")
  pass=$(sed -n 's/.*"real_pass_frac": \([0-9.]*\).*/\1/p' "$out/kept_s$s.txt.json")
  acc=$(sed -n 's/.*"discriminator_accuracy": \([0-9.]*\).*/\1/p' "$out/kept_s$s.txt.json")
  nkept=$(sed -n 's/.*"kept": \([0-9]*\),.*/\1/p' "$out/kept_s$s.txt.json")
  l_syn=$(train "synth_s$s" "$s" "$out/small.txt" "$vf_small" --synth-path "$out/kept_s$s.txt" --synth-ratio "$ratio")
  # the control: the same samples unfiltered (threshold 0 keeps every one)
  "$F" synth --run "$out/small_s$s" --ckpt "$out/small_s$s/best" --out "$out/all_s$s.txt" --real "$out/train_small.txt" \
    --n-samples "$samples" --n $((T - 1)) --seed "$s" --threshold 0 > "$out/gen_all_s$s.log" 2>&1 ||
    { echo "synth_eval: synth failed: $(tail -3 "$out/gen_all_s$s.log")" >&2; exit 1; }
  l_all=$(train "unfilt_s$s" "$s" "$out/small.txt" "$vf_small" --synth-path "$out/all_s$s.txt" --synth-ratio "$ratio")
  rows+=("| $s | $l_full | $l_small | $l_syn | $l_all | $kept ($nkept of $samples) | $pass | $acc |")
  echo "synth_eval: seed $s: full $l_full, small $l_small, small+synth $l_syn, small+unfiltered $l_all" \
       "(kept $kept, real passing $pass)"
done
{
  echo "| seed | 100% real | ${frac} real | ${frac} real + filtered synthetic (ratio $ratio) | ${frac} real + unfiltered synthetic | kept fraction | real text passing | discriminator accuracy |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} > "$out/synth_eval.md"
echo
echo "validation loss (nats per byte, best/ checkpoint, whole validation text):"
cat "$out/synth_eval.md"
