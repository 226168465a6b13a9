#!/usr/bin/env bash
# levers_train.sh: issue 17's must-show 2 for two training-loop levers, on small models
# (byte tokenizer, tinyshakespeare), each arm with 2 seeds:
#  (a) adaptive batch (llama L1 C32 NH2, T=32, B=4, 1 thread, 300 steps): fixed grad_accum 1, 2, 4 (LR x sqrt(accum), the rule the adaptive
#      arms use) against batch_rule loss_var and gns (from accum 2, up to 8). The target is
#      the baseline's (fixed accum 2) last validation loss; each run reports the steps and
#      training tokens at its first validation at or below it ("-": not reached).
#  (b) augmentation (llama L2 C64 NH4, T=64, B=8, 600 steps): 10% of the training text (the first tenth of the 90% train part),
#      validated on the usual last 10% of the file; with and without --aug; the last and
#      best validation loss.
# Losses only: the runs share the machine, so their seconds mean nothing here (bench/
# cost.sh times the recipe). Run at nice 10 by default.
#
# Usage: bench/levers_train.sh [--frugal build/frugal] [--data ../shared/data/tinyshakespeare.txt]
#                              [--out /tmp/levers] [--seeds "1 2"] [--only adaptive|aug]
#                              [--steps-a 300] [--steps-b 600]
# (the two parts, or the seeds, may run as separate invocations side by side: --only, --seeds)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
frugal="$root/build/frugal"
data="$root/../shared/data/tinyshakespeare.txt"
out=/tmp/levers
seeds="1 2"
only=""
steps_a=300
steps_b=600
while [ $# -gt 0 ]; do
  case "$1" in
    --frugal) frugal=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --steps-a) steps_a=$2; shift 2 ;;
    --steps-b) steps_b=$2; shift 2 ;;
    *) echo "levers_train.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$frugal" ] || { echo "levers_train.sh: $frugal not built" >&2; exit 1; }
[ -f "$data" ] || { echo "levers_train.sh: $data not found (../shared/data)" >&2; exit 1; }
mkdir -p "$out"
model="--n-layer 1 --d-model 32 --n-head 2 --seq-len 32 --batch-size 4 --threads 1 --overwrite" # (a)

train() { # out_dir args...
  local dir=$1; shift
  nice -n 10 "$frugal" train --out "$dir" $model "$@" > "$dir.log" 2>&1 ||
    { echo "levers_train.sh: run $dir failed:" >&2; tail -5 "$dir.log" >&2; exit 1; }
}

last_val() { jq -r 'select(.val_loss != null) | .val_loss' "$1/metrics.jsonl" | tail -1; }
best_val() { jq -r 'select(.val_loss != null) | .val_loss' "$1/metrics.jsonl" | sort -g | head -1; }
# steps and tokens at the first validation <= target
reach() {
  jq -r --argjson t "$2" 'if .loss != null then "T \(.step) \(.tokens)" elif .val_loss <= $t then "V \(.step)" else empty end' \
    "$1/metrics.jsonl" | awk '$1 == "T" { tok[$2] = $3 } $1 == "V" && $2 > 0 { print $2, tok[$2]; exit }'
}
final_accum() { jq -r 'select(.accum != null) | .accum' "$1/metrics.jsonl" | tail -1; }

if [ -z "$only" ] || [ "$only" = adaptive ]; then
  echo "== (a) adaptive batch: L1 C32 T32, $steps_a steps, B=4, lr 2e-3 x sqrt(accum / 2) ; val every 10 steps =="
  common="--data $data --max-steps $steps_a --warmup-steps 20 --val-every 10 --val-batches 8 --lr 2e-3 --min-lr 2e-4"
  printf "%-6s %-22s %10s %14s %14s %12s\n" seed arm val_last steps_to_tgt tokens_to_tgt accum_end
  for s in $seeds; do
    # the LR rule of the adaptive arms applied to the fixed ones: lr(accum) = 2e-3 x sqrt(accum / 2)
    train "$out/a_s${s}_fixed2" $common --seed "$s" --grad-accum 2
    tgt=$(last_val "$out/a_s${s}_fixed2")
    for arm in fixed1 fixed2 fixed4 loss_var gns; do
      dir="$out/a_s${s}_$arm"
      case $arm in
        fixed1) train "$dir" $common --seed "$s" --grad-accum 1 --lr 1.4142e-3 --min-lr 1.4142e-4 ;;
        fixed2) ;;
        fixed4) train "$dir" $common --seed "$s" --grad-accum 4 --lr 2.8284e-3 --min-lr 2.8284e-4 ;;
        loss_var) train "$dir" $common --seed "$s" --grad-accum 2 --batch-rule loss_var --batch-accum-max 8 \
                    --batch-check-every 20 ;;
        gns) train "$dir" $common --seed "$s" --grad-accum 2 --batch-rule gns --batch-accum-max 8 \
               --batch-check-every 20 ;;
      esac
      r=$(reach "$dir" "$tgt"); [ -n "$r" ] || r="- -"
      acc=$(final_accum "$dir"); [ -n "$acc" ] || acc=$(echo $arm | tr -dc 0-9)
      printf "%-6s %-22s %10.4f %14s %14s %12s\n" "$s" "$arm" "$(last_val "$dir")" $r "$acc"
    done
    echo "       (target: fixed2's last val loss $tgt)"
  done
fi

if [ -z "$only" ] || [ "$only" = aug ]; then
  echo "== (b) augmentation: L2 C64 T64, 10% of the training text, $steps_b steps, B=8 =="
  model="--n-layer 2 --d-model 64 --n-head 4 --seq-len 64 --batch-size 8 --threads 2 --overwrite"
  # first tenth of the train part (90% of the bytes, cut at a line end) + the usual val tail
  n=$(wc -c < "$data")
  cut=$((n * 9 / 10))
  small="$out/ts10.txt"
  head -c $((cut / 10)) "$data" | sed '$d' > "$small.train"
  tail -c +$((cut + 1)) "$data" | sed '1d' > "$small.val"
  cat "$small.train" "$small.val" > "$small"
  # val_frac: the val tail's share, so the split lands at the junction (to the next line)
  vf=$(awk -v a="$(wc -c < "$small.train")" -v b="$(wc -c < "$small.val")" 'BEGIN { printf "%.6f", b / (a + b) }')
  common="--data $small --val-frac $vf --max-steps $steps_b --warmup-steps 20 --val-every 50 --val-batches 32 --lr 2e-3 --min-lr 2e-4"
  printf "%-6s %-8s %10s %10s %10s\n" seed arm val_last val_best revisits
  for s in $seeds; do
    for arm in plain aug; do
      dir="$out/b_s${s}_$arm"
      if [ $arm = aug ]; then train "$dir" $common --seed "$s" --aug; else train "$dir" $common --seed "$s"; fi
      rv=$(jq -r 'select(.aug_revisits != null) | .aug_revisits' "$dir/metrics.jsonl" | tail -1)
      printf "%-6s %-8s %10.4f %10.4f %10s\n" "$s" "$arm" "$(last_val "$dir")" "$(best_val "$dir")" "${rv:--}"
    done
  done
  grep -h "^data:" "$out"/b_s*_plain.log | head -1
fi
