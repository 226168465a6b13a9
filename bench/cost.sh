#!/usr/bin/env bash
# cost.sh: the recipe benchmark (issue 17): trains the dense fp32 baseline, takes its
# final validation loss as the target, then trains each lever alone and all of them
# together (the recipe) on the same data, schedule and step budget, and reports the
# CPU-seconds and training FLOPs each needed to reach the target, against the baseline's
# and against PyTorch's for the baseline model (tools/cost_torch.py). One markdown table
# (printed, and OUT/cost.md) and one plot (`frugal plot` of every row: OUT/cost_plot.png).
#
# Usage: bench/cost.sh [--quick] [--frugal build/frugal] [--data FILE] [--out DIR]
#                      [--threads N] [--seed S] [--python PY] [--no-torch] [--levers "moe bf16 ..."]
#                      [--recipe "moe bf16 ..."] [--fixed-batches "4 16 ..."] [--target LOSS | --slack 0.01]
#                      [--lr LR] [--recipe-lr LR] [--sched-steps S] [--no-lever-rows]
#   --quick   a 2-layer d=64 model, 200 steps on 1 MB of text: a few minutes on 2 cores
#   --target  the validation loss every row must reach; default: the baseline's final
#             validation loss x (1 + --slack), the slack (1%) so that a run drawing other
#             random windows (PyTorch) can reach what the baseline reached
#   --levers  which lever rows to run (default: every one that has landed; see below)
#   --recipe  the levers the "recipe" row combines (default: "moe bf16 async lr,llama moe
#             bf16 async lr,llama moe bf16 async lr sched", the sets measured best at full
#             size in the baseline's layout, in the llama layout, and the latter at its own
#             schedule horizon, docs/perf/cost.md; with --levers and no --recipe:
#             every lever row run); more
#             recipes separated by commas give rows recipe2, recipe3...: e.g.
#             --recipe "moe bf16 async adaptive augment,moe bf16 async" (all, then the
#             ones whose own rows beat the baseline at the quick size)
#   --lr      the baseline's (and every lever row's) peak LR: default 4e-3 at full size, the
#             best final loss of 2e-3, 3e-3, 4e-3 and 6e-3 for the dense fp32 baseline; 3e-3
#             with --quick, the best of 1e-3 to 4e-3 there (docs/perf/cost.md)
#   --recipe-lr  the peak LR of the lever "lr": default 4e-3 at full size (the best of 2e-3,
#             4e-3 and 6e-3 for the MoE + bf16 model), 2e-3 with --quick (4e-3 misses the
#             target there, 3e-3 needs 140 steps against 2e-3's 130; docs/perf/cost.md).
#             Alone, that row is the dense baseline at this LR: a check that the
#             baseline's LR is its best
#   --sched-steps  the horizon S of the lever "sched" (below): default 600 at full size, the
#             smallest S of 400-700 at which recipe2 + sched reaches the target at its
#             earliest crossing (450 steps) in seeds 1337 and 2 with a margin of 1% or more
#             (500: 0.8%; 1,000, i.e. no sched: 500 steps in seed 2); 180 with --quick, where
#             no horizon crosses before the full one's 80 steps (docs/perf/cost.md section 6)
#   --no-lever-rows  run the baseline and the recipe rows only (the levers still must be
#             offered; they are not trained alone)
#   --fixed-batches  extra rows "batchN" of the baseline at batch size N (same steps and
#             schedule): the fixed batches the adaptive row is judged against (issue 17)
# Data: --data, else ../shared/data/tinyshakespeare.txt, tokenised as bytes (so PyTorch
# reads the same tokens without a tokenizer).
#
# Levers (each a row alone, then the recipe's together as "recipe"):
#   moe       --n-expert 8 --n-expert-active 1 --n-shared-expert 1 --d-expert ~4C/3:
#             experts are SwiGLU (3 matrices), so 2 active experts of 4C/3 cost about the
#             dense GELU FFN's 8C^2 per token, with 4.5x its FFN parameters; 1 of 8 routed
#             experts per token (12.5%, not the <5% of big models: at the quick size a step
#             routes 512 tokens, 64 per expert; 16 or 32 experts of the same size reached
#             the target later, each expert seeing too few tokens in 200 steps);
#             --balance bias --balance-gamma 0.01 (the demo's: median per-step load
#             max/mean 1.36 over the quick run's second half; 2.95 at the default 0.001).
#             Before issue 17's fix of the experts' init this row collapsed (load 6-8 of 8)
#             and never reached the target (docs/MOE.md "Initialisation"). COST_FLAGS_MOE
#             replaces the flags.
#   bf16      --precision bf16 (bf16 GEMMs and saved activations, fp32 master weights)
#   async     --ckpt-async 1 (every row checkpoints every ckpt_every steps; the baseline
#             and the other rows write synchronously)
#   sharing   --ffn-share seed --ffn-share-group 2 --ffn-share-rank 16 (learned a)
#   mla       --mla-kv-rank C/4 (multi-head latent attention; KV cache, not compute)
#   adaptive  --batch-rule loss_var --batch-accum-max 4 (the batch grows by accumulation)
#   augment   --aug 1 (loss-driven augmentation of hard windows)
#   lr        --lr RECIPE_LR: the recipe's own best LR from the same sweep as the baseline's
#             (full size: 4e-3 for both, so no row of its own; --quick: 2e-3 against the
#             baseline's 3e-3)
#   llama     --layout llama (RMSNorm, RoPE, SwiGLU FFN of d_ff 3C): the architecture, not a
#             training trick; its row alone is the dense fp32 llama model, so the layout's
#             share of a recipe's saving is on its own line (not swept: the baseline's LR)
#   sched     --max-steps S (--sched-steps): the row's own, shorter schedule horizon: its
#             warmup + cosine to min_lr spans S steps instead of the baseline's budget, and the
#             row stops at S (one that has not reached the target by then says "no (budget)").
#             A recipe that reaches the target mid-schedule does so at a high LR, before any
#             annealing; a horizon near its crossing anneals first. The baseline keeps its
#             full budget: its final loss defines the target, and a shorter baseline horizon
#             would only move the target (docs/perf/cost.md). Alone, the row is the
#             baseline model at horizon S
#   Each is used when `frugal train --help` offers its option; the flags can be replaced
#   with COST_FLAGS_MOE, COST_FLAGS_SHARING, COST_FLAGS_MLA, COST_FLAGS_ADAPTIVE, COST_FLAGS_AUGMENT.
#   sharing and mla run at fp32 only, so the recipe leaves them out when bf16 is in it
#   (bf16 is the one that saves compute; the script says so when it drops them).
#
# CPU-seconds to the target: the run's process CPU time (user + system, bash `time`)
# times the share of its training seconds (sum of step_s in metrics.jsonl) spent up to
# the first validation at or below the target: start-up, validations and checkpoints are
# charged in proportion. FLOPs to the target: tokens up to that step times the model's
# training FLOPs per token (flops_per_s / tokens_per_s of the metrics; MoE counts active
# parameters). PyTorch's row is measured directly (process_time up to its crossing).
# Threads wait passively (OMP_WAIT_POLICY=passive unless set): a spinning OpenMP wait is
# counted as CPU time, and on a machine shared with other work it made the same dense run
# cost 4 or 20 CPU-seconds; passive waits charge each row the work it did (PyTorch too).
# Timings are only comparable on a quiet machine: the lead takes the figures.
set -euo pipefail
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
root=$(cd "$(dirname "$0")/.." && pwd)
F=$root/build/frugal
data=$root/../shared/data/tinyshakespeare.txt
out=runs/cost
threads=$(nproc)
seed=1337
. "$root/bench/peers_python.sh"
py=$PY
quick=0
torch=1
target=""
slack=0.01
levers=""
recipe_levers=""
fixed_batches=""
lr=""
recipe_lr=""
sched_steps=""
lever_rows=1
# the default recipes: the levers that cut the CPU-seconds to the target at full size
# (docs/perf/cost.md); adaptive batch and augmentation are rows but not in them (see
# there). recipe keeps the baseline's GPT-2 layout; recipe2 adds the llama layout;
# recipe3 gives recipe2 its own schedule horizon (sched)
default_recipe="moe bf16 async lr,llama moe bf16 async lr,llama moe bf16 async lr sched"
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 ;;
    --frugal) F=$2; shift ;;
    --data) data=$2; shift ;;
    --out) out=$2; shift ;;
    --threads) threads=$2; shift ;;
    --seed) seed=$2; shift ;;
    --python) py=$2; shift ;;
    --no-torch) torch=0 ;;
    --levers) levers=$2; shift ;;
    --recipe) recipe_levers=$2; shift ;;
    --fixed-batches) fixed_batches=$2; shift ;;
    --target) target=$2; shift ;;
    --slack) slack=$2; shift ;;
    --lr) lr=$2; shift ;;
    --recipe-lr) recipe_lr=$2; shift ;;
    --sched-steps) sched_steps=$2; shift ;;
    --no-lever-rows) lever_rows=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "cost.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$F" ] || { echo "cost.sh: $F is not an executable (build first, or give --frugal)" >&2; exit 2; }
[ -f "$data" ] || { echo "cost.sh: no data: $data (give --data FILE)" >&2; exit 2; }
mkdir -p "$out"

if [ $quick = 1 ]; then
  # validations every 10 steps: a crossing step is then known to 5% of the run, not 10%
  L=2 C=64 NH=2 B=8 T=64 steps=200 warmup=20 val_every=10 val_batches=4 ckpt_every=50
  lr=${lr:-3e-3} recipe_lr=${recipe_lr:-2e-3} sched_steps=${sched_steps:-180}
  head -c 1000000 "$data" > "$out/data.txt"
else
  L=4 C=128 NH=4 B=16 T=128 steps=1000 warmup=30 val_every=50 val_batches=8 ckpt_every=100
  lr=${lr:-4e-3} recipe_lr=${recipe_lr:-4e-3} sched_steps=${sched_steps:-600}
  cp "$data" "$out/data.txt"
fi
min_lr=2e-4 # lr: each size's sweep above; min_lr and warmup are the same for every row
common="--data $out/data.txt --tokenizer byte --layout gpt2 --n-layer $L --d-model $C --n-head $NH
        --batch-size $B --seq-len $T --max-steps $steps --warmup-steps $warmup --lr $lr --min-lr $min_lr
        --weight-decay 0.1 --grad-clip 1.0 --val-every $val_every --val-batches $val_batches --log-every 1000
        --ckpt-every $ckpt_every --threads $threads --seed $seed --overwrite 1 --keep-best 0"

# ---- the levers that have landed: each a name and its flags ----
help=$("$F" train --help 2>&1)
has() { case $help in *"  $1 "*) return 0 ;; esac; return 1; } # no pipe: grep -q could SIGPIPE it under pipefail
declare -A flags
order=()
add() { flags[$1]=$2; order+=("$1"); }
has --n-expert && add moe "${COST_FLAGS_MOE:---n-expert 8 --n-expert-active 1 --n-shared-expert 1 --d-expert $(((4 * C / 3 + 7) / 8 * 8)) --balance bias --balance-gamma 0.01}"
has --precision && add bf16 "--precision bf16"
has --ckpt-async && add async "--ckpt-async 1"
has --ffn-share && add sharing "${COST_FLAGS_SHARING:---ffn-share seed --ffn-share-group 2 --ffn-share-rank 16 --ffn-share-learn-alpha true}"
has --mla-kv-rank && add mla "${COST_FLAGS_MLA:---mla-kv-rank $((C / 4))}"
has --batch-rule && add adaptive "${COST_FLAGS_ADAPTIVE:---batch-rule loss_var --batch-accum-max 4}"
has --aug && add augment "${COST_FLAGS_AUGMENT:---aug 1}"
add lr "--lr $recipe_lr"
add llama "${COST_FLAGS_LLAMA:---layout llama}"
add sched "--max-steps $sched_steps" # after $common's --max-steps: the last one given wins
if [ -n "$levers" ]; then
  for l in $levers; do [ -n "${flags[$l]+x}" ] || { echo "cost.sh: lever '$l' is not offered (have: ${order[*]})" >&2; exit 2; }; done
  read -r -a order <<< "$levers"
fi
in_list() { local x=$1 l; shift; for l in "$@"; do [ "$l" = "$x" ] && return 0; done; return 1; }
# each recipe: its row name and flags (sharing and mla dropped when it runs bf16)
recipe_names=()
declare -A recipe_flags
recipe_list=()
if [ -n "$recipe_levers" ]; then
  IFS=',' read -r -a recipe_list <<< "$recipe_levers"
elif [ -z "$levers" ]; then # the measured best sets (docs/perf/cost.md), of the levers offered
  IFS=',' read -r -a dl <<< "$default_recipe"
  for d in "${dl[@]}"; do
    rl=()
    for l in $d; do [ -n "${flags[$l]+x}" ] && rl+=("$l"); done
    [ ${#rl[@]} -gt 0 ] && recipe_list+=("${rl[*]}")
  done
elif [ ${#order[@]} -gt 1 ]; then # one lever alone is its own row already
  recipe_list=("${order[*]}")
fi
for i in "${!recipe_list[@]}"; do
  read -r -a rl <<< "${recipe_list[$i]}"
  [ ${#rl[@]} -ge 1 ] || { echo "cost.sh: recipe $((i + 1)) of --recipe names no lever" >&2; exit 2; }
  rn=recipe
  [ "$i" -gt 0 ] && rn=recipe$((i + 1))
  fl=""
  for l in "${rl[@]}"; do
    [ -n "${flags[$l]+x}" ] || { echo "cost.sh: recipe lever '$l' is not offered (have: ${!flags[*]})" >&2; exit 2; }
    if in_list bf16 "${rl[@]}" && { [ "$l" = sharing ] || [ "$l" = mla ]; }; then
      echo "cost.sh: $rn without '$l' (fp32 only; the recipe runs bf16)" >&2
      continue
    fi
    fl="$fl ${flags[$l]}"
  done
  recipe_names+=("$rn")
  recipe_flags[$rn]=$fl
done

# ---- one row: train and time it; then read the crossing out of its metrics.jsonl ----
train_row() { # NAME FLAGS...
  local name=$1; shift
  local TIMEFORMAT='%3U %3S'
  # shellcheck disable=SC2086
  { time "$F" train $common --ckpt-async 0 "$@" --out "$out/$name" > "$out/$name.log" 2>&1; } 2> "$out/$name.time" ||
    { echo "cost.sh: $name failed: $(tail -3 "$out/$name.log")" >&2; exit 1; }
}
# prints: reached step cpu_to flops_to tokens_to final_val best_val cpu_total
cross() { # NAME TARGET
  local cpu
  cpu=$(awk '{ print $1 + $2 }' "$out/$1.time")
  awk -F'[,:{} ]+' -v target="$2" -v cpu="$cpu" '
    function get(key,   i) { for (i = 1; i < NF; i++) if ($i == "\"" key "\"") return $(i + 1); return "" }
    { step = get("step") + 0 }
    /"val_loss"/ { v = get("val_loss") + 0; last = v; if (nv++ == 0 || v < best) best = v
                   if (!reached && v <= target) { reached = 1; rstep = step } next }
    /"loss"/ { secs += get("step_s"); at[step] = secs; tok[step] = get("tokens")
               tps = get("tokens_per_s"); fps = get("flops_per_s"); if (tps > 0) fpt[step] = fps / tps }
    END { if (!reached) { rstep = step }
          share = secs > 0 ? at[rstep] / secs : 1
          printf "%d %d %.3f %.6g %.0f %.9g %.9g %.3f\n", reached, rstep, cpu * share, tok[rstep] * fpt[rstep],
                 tok[rstep], last, best, cpu }' "$out/$1/metrics.jsonl"
}

echo "cost: data $out/data.txt ($(wc -c < "$out/data.txt") bytes, byte tokens), gpt2 L=$L C=$C NH=$NH B=$B T=$T," \
     "$steps steps, $threads threads, seed $seed; levers: ${order[*]:-none}"
echo "cost: baseline (dense fp32, synchronous checkpoints)..."
train_row baseline
read -r _ _ _ _ _ base_final _ _ <<< "$(cross baseline 0)"
if [ -z "$target" ]; then
  target=$(awk -v v="$base_final" -v s="$slack" 'BEGIN { printf "%.6f", v * (1 + s) }')
  how="the baseline's final $base_final x (1 + $slack)"
else
  how="given"
fi
read -r b_reached b_step b_cpu b_flops _ b_final _ _ <<< "$(cross baseline "$target")"
echo "cost: target validation loss $target ($how)"

results=("baseline|dense fp32|$b_reached|$b_step|$b_cpu|$b_flops|$b_final")
runs=("$out/baseline")
names=()
if [ $lever_rows = 1 ]; then
  for l in "${order[@]}"; do # the lr row is the baseline itself when both LRs agree
    [ "$l" = lr ] && [ "$recipe_lr" = "$lr" ] && continue
    names+=("$l")
  done
fi
names+=("${recipe_names[@]}")
for b in $fixed_batches; do
  flags[batch$b]="--batch-size $b"
  names+=("batch$b")
done
for n in "${names[@]}"; do
  if [ -n "${recipe_flags[$n]+x}" ]; then fl=${recipe_flags[$n]}; else fl=${flags[$n]}; fi
  echo "cost: $n ($fl)..."
  # shellcheck disable=SC2086
  train_row "$n" $fl
  read -r r s c f _ fin _ _ <<< "$(cross "$n" "$target")"
  results+=("$n|$fl|$r|$s|$c|$f|$fin")
  runs+=("$out/$n")
done

torch_line=""
if [ $torch = 1 ] && "$py" -c 'import torch' 2>/dev/null; then
  echo "cost: PyTorch (tools/cost_torch.py, the baseline model in eager fp32)..."
  torch_line=$("$py" "$root/tools/cost_torch.py" --data "$out/data.txt" --target "$target" --layers $L --d-model $C \
               --heads $NH --B $B --T $T --lr "$lr" --min-lr $min_lr --warmup $warmup --max-steps $steps \
               --val-every $val_every --val-batches $val_batches --threads "$threads" --seed "$seed" | grep '^torch.cost')
else
  echo "cost: PyTorch row skipped (--no-torch, or no torch in $py)"
fi
tget() { printf '%s\n' "$torch_line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

{
  echo "| row | flags | reached target | step | CPU-s to target | x baseline | x PyTorch | FLOPs to target | x baseline | final val loss |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  t_cpu=$(tget cpu_s)
  for r in "${results[@]}"; do
    IFS='|' read -r n fl ok s c f fin <<< "$r"
    xb=$(awk -v a="$c" -v b="$b_cpu" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
    xt=$( [ -n "$t_cpu" ] && awk -v a="$c" -v b="$t_cpu" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }' || echo "n/a")
    xf=$(awk -v a="$f" -v b="$b_flops" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
    yes=$([ "$ok" = 1 ] && echo yes || echo "no (budget)")
    echo "| $n | \`${fl# }\` | $yes | $s | $c | $xb | $xt | $f | $xf | $(printf '%.4f' "$fin") |"
  done
  if [ -n "$torch_line" ]; then
    treached=$([ "$(tget reached)" = 1 ] && echo yes || echo "no (budget)")
    echo "| PyTorch $(tget torch) eager fp32 | baseline model | $treached | $(tget step) | $t_cpu |" \
         "$(awk -v a="$t_cpu" -v b="$b_cpu" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }') | 1.000 | | | $(tget val) |"
  fi
} > "$out/cost.md"
echo
echo "target validation loss $target ($how; nats per byte); CPU-seconds = user + system of the process"
cat "$out/cost.md"

if command -v gnuplot >/dev/null 2>&1; then
  "$F" plot "${runs[@]}" --out "$out/cost_plot" --title "cost.sh: rows to validation loss $target" >/dev/null &&
    echo "cost: plot $out/cost_plot.png (and .svg)"
else
  echo "cost: no plot (gnuplot absent: apt-get install gnuplot-nox)"
fi
