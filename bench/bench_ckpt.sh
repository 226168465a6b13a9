#!/usr/bin/env bash
# bench_ckpt.sh: what checkpointing costs, measured side by side in one script:
#  1. training wall time with a checkpoint every 10 steps: none vs synchronous vs
#     asynchronous (interleaved repetitions, medians, ratios against "none");
#  2. delta against full checkpoint size on the same real run, per tensor, and what
#     compressing full checkpoints (byte shuffle + zstd 1) would save.
# Usage: bench/bench_ckpt.sh [path/to/frugal]   (env: STEPS, REPS, EVERY, THREADS, MODEL, DATA)
set -euo pipefail
FRUGAL=${1:-${FRUGAL:-build/frugal}}
HERE=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-$HERE/../shared/data/tinyshakespeare.txt}
STEPS=${STEPS:-100}
REPS=${REPS:-5}
EVERY=${EVERY:-10}
THREADS=${THREADS:-2}
MODEL=${MODEL:-"--n-layer 4 --n-head 4 --d-model 128 --batch-size 8 --seq-len 128"}
[ -x "$FRUGAL" ] || { echo "bench_ckpt: no frugal binary at $FRUGAL" >&2; exit 2; }
[ -f "$DATA" ] || { echo "bench_ckpt: no data at $DATA" >&2; exit 2; }
tmp=$(mktemp -d /tmp/bench_ckpt.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

"$FRUGAL" train --data "$DATA" --out "$tmp/prep" --max-steps 1 --n-layer 1 --d-model 16 --n-head 2 >/dev/null 2>&1
COMMON="--train-shards $tmp/prep/data/train.bin --val-shards $tmp/prep/data/val.bin $MODEL --max-steps $STEPS
        --val-every 0 --val-batches 1 --log-every 100000 --threads $THREADS"

echo "frugal checkpoint benchmark: $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "model: $MODEL, $STEPS steps, checkpoint every $EVERY steps, $REPS interleaved repetitions, threads $THREADS"

# one run: prints "wall_s cpu_s": the trainer's wall time, and the process CPU time
# (user + sys: less sensitive than wall time to other jobs on a shared machine)
run() { # mode rep
    local mode=$1 out="$tmp/$1_$2" every=$EVERY async=1 t
    case $mode in none) every=0 ;; sync) async=0 ;; esac
    t=$( { TIMEFORMAT='%3U %3S'; time FG_CKPT_ASYNC=$async "$FRUGAL" train $COMMON --out "$out" --ckpt-every $every \
        >"$out.log" 2>&1; } 2>&1 ) || { cat "$out.log" >&2; exit 1; }
    echo "$(sed -n 's/^wall time *: \([0-9.]*\) s.*/\1/p' "$out.log") $(echo "$t" | awk '{print $1 + $2}')"
}
declare -A W C
for rep in $(seq 1 "$REPS"); do
    for mode in none sync async; do
        read -r w c < <(run $mode $rep)
        W[$mode]="${W[$mode]:-} $w"
        C[$mode]="${C[$mode]:-} $c"
        echo "  rep $rep $mode: wall $w s, cpu $c s"
    done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo
echo "| checkpointing (every $EVERY steps) | median wall s | wall vs none | median CPU s | CPU vs none |"
echo "|---|---|---|---|---|"
wn=$(echo "${W[none]}" | median)
cn=$(echo "${C[none]}" | median)
for mode in none sync async; do
    w=$(echo "${W[$mode]}" | median)
    c=$(echo "${C[$mode]}" | median)
    awk -v m=$mode -v w="$w" -v c="$c" -v wn="$wn" -v cn="$cn" \
        'BEGIN { printf "| %s | %.2f | %.3f | %.2f | %.3f |\n", m, w, w / wn, c, c / cn }'
done

# Where the checkpoint time goes, from the writer's own summary line in each log
# (robust to other jobs: these are the writer's measurements, not differences of two
# noisy wall times): the time the training thread spent in checkpoint calls (copy +
# waiting for the previous write, + the whole write when synchronous), the writer's CPU
# seconds, and the trainer's step time (which excludes checkpoint calls).
echo
echo "| mode | training steps s | training thread in ckpt calls s | writer CPU s | (calls + writer CPU) / steps |"
echo "|---|---|---|---|---|"
for mode in sync async; do
    for rep in $(seq 1 "$REPS"); do
        log="$tmp/${mode}_$rep.log"
        steps=$(sed -n 's/^wall time.*(training steps \([0-9.]*\) s).*/\1/p' "$log")
        sed -n "s|.*checkpoints in $tmp/${mode}_$rep/ckpt:.*copy \([0-9.]*\) s, wait \([0-9.]*\) s; writer ([a-z ]*): \([0-9.]*\) s, CPU \([0-9.]*\) s.*|\1 \2 \3 \4|p" "$log" |
            awk -v m=$mode -v st="$steps" '{ calls = $1 + $2 + (m == "sync" ? $3 : 0);
                printf "%s %.3f %.3f %.3f %.4f\n", m, st, calls, $4, (calls + (m == "async" ? $4 : 0)) / st }'
    done | sort -k5 -g | awk -v n="$REPS" 'NR == int((n + 1) / 2) { printf "| %s (median of %d) | %s | %s | %s | %s |\n", $1, n, $2, $3, $4, $5 }'
done

# sizes, from the last asynchronous run (full_every 10 by default: 1 full + deltas)
dir="$tmp/async_$REPS/ckpt"
echo
"$FRUGAL" ckpt info "$dir"
"$FRUGAL" ckpt info "$dir" | awk '$3 == "full" {f += $5; nf++} $3 == "delta" {d += $5; nd++}
    END { if (nf && nd) printf "\nmean delta file / mean full file = %.0f / %.0f bytes = %.3f\n", d / nd, f / nf, (d / nd) / (f / nf) }'
last=$(ls "$dir"/ckpt-*-delta.fgck | tail -1)
echo "per tensor, newest delta ($(basename "$last")):"
"$FRUGAL" ckpt info "$last" | awk '$4 ~ /zstd|raw/ && $2 ~ /^[0-9]+$/ {printf "  %-10s %.3f of raw\n", $1, $3 / $2}'
# compressed full checkpoints: one more run with FG_CKPT_COMPRESS_FULL=1
FG_CKPT_COMPRESS_FULL=1 "$FRUGAL" train $COMMON --out "$tmp/zfull" --ckpt-every $EVERY --max-steps $EVERY >/dev/null 2>&1
zf=$(ls "$tmp"/zfull/ckpt/ckpt-*-full.fgck | head -1)
"$FRUGAL" ckpt info "$zf" | awk '/^size/ {print "full checkpoint with byte shuffle + zstd 1: " $0}'
