#!/usr/bin/env bash
# ablation.sh: the architecture levers of issue 15 side by side (its "Must show 2"): one
# small gpt2-layout model, the same steps, batch and data for every row and seed, rows
#   baseline | FFN sharing, seed form | FFN sharing, plain | MLA | MTP D=1 | all together
# ("all" = seed sharing + MLA + MTP), and on request (ROWS) base_flops: the baseline
# trained for the MTP row's training FLOPs (STEPS x its FLOPs per token / the baseline's;
# needs both runs of the seed in OUT_DIR first, e.g. ROWS=base_flops APPEND=1 after a
# full run), MTP's comparison at equal compute. Three modes, so that the losses
# (independent of the machine's load: run them niced any time) and the timings (need a
# quiet machine) are taken apart:
#   MODE=loss  (default) STEPS steps per row and seed, held-out loss after the same tokens
#              (`frugal sample --eval` on the last EVAL_BYTES of the text, never trained on;
#              MTP's modules do not enter it), with stored parameters (and without the
#              embeddings, where the levers act), FLOPs per training token, KV-cache bytes
#              per token in generation (the trainer's count: 2 L C 4 for attention,
#              (kv_rank + rope_dim) L 4 for MLA's latent + decoupled RoPE key), the seed
#              spread of each row; no tokens/s.
#   MODE=speed SPEED_STEPS steps of the first seed per row: training tokens/s only.
#   MODE=count one step per row: parameters, FLOPs per token and KV bytes only (seconds).
# Defaults are the issue's ablation config: GPT-2 tokenizer, L8 C256 NH4, T64 B8, one
# sharing group of all 8 layers, seed form rank 8 (= C/32: -18.4% parameters, the issue's
# >= 18%; docs/MODEL.md "FFN sharing" has the formula), learned a from 0.5.
# Usage: bench/ablation.sh [BUILD_DIR=build] [OUT_DIR=runs/ablation]
# Env: MODE (loss), STEPS (600), SPEED_STEPS (50), SEEDS ("1 2"), THREADS (all cores),
#   LAYERS (8), DMODEL (256), HEADS (4), SEQ (64), BATCH (8), LR (0.002),
#   SHARE_GROUP (LAYERS), SHARE_RANK (DMODEL/32), SHARE_ALPHA (0.5), SHARE_LEARN (true),
#   MLA_KV_RANK (DMODEL/2: 1/4 of the baseline's KV cache, the issue's bound), MLA_Q_RANK
#   (0: full-rank queries; a query latent of C/2 cost 0.7 points more and is not cached),
#   MLA_ROPE_DIM (0: gpt2 has learned positions), MLA_NORM (false: no latent norms, the
#   model's default; true = DeepSeek's normed latents; docs/perf/mla.md section 2), MTP_LAMBDA (0.3), EVAL_BYTES (60000), EVAL_TOKENS (0 = all of them),
#   ROWS (default "baseline share_seed share_plain mla mtp all"), EXTRA (flags added to
#   every row, e.g. EXTRA="--n-expert 8 --n-expert-active 2 --d-expert 64" for MoE),
#   DATA (../shared/data/tinyshakespeare.txt), TOKENIZER (../shared/data/gpt2, or byte),
#   APPEND (0; 1 = add to results-MODE.tsv in OUT_DIR instead of starting it afresh),
#   TAG (appended to the row names, e.g. TAG=_r64 MLA_KV_RANK=64 ROWS=mla APPEND=1).
set -euo pipefail
build=${1:-build}
out=${2:-runs/ablation}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$build/frugal
mode=${MODE:-loss}
seeds=${SEEDS:-1 2}
threads=${THREADS:-$(nproc)}
L=${LAYERS:-8}
C=${DMODEL:-256}
NH=${HEADS:-4}
T=${SEQ:-64}
B=${BATCH:-8}
lr=${LR:-0.002}
G=${SHARE_GROUP:-$L}
R=${SHARE_RANK:-$((C / 32 > 0 ? C / 32 : 1))}
A=${SHARE_ALPHA:-0.5}
learn=${SHARE_LEARN:-true}
kvr=${MLA_KV_RANK:-$((C / 2))}
qr=${MLA_Q_RANK:-0}
rd=${MLA_ROPE_DIM:-0}
mnorm=${MLA_NORM:-false}
lam=${MTP_LAMBDA:-0.3}
eval_bytes=${EVAL_BYTES:-60000}
eval_tokens=${EVAL_TOKENS:-0}
rows=${ROWS:-baseline share_seed share_plain mla mtp all}
data=${DATA:-$root/../shared/data/tinyshakespeare.txt}
tok=${TOKENIZER:-$root/../shared/data/gpt2}
read -r -a extra <<< "${EXTRA:-}"
case $mode in
  loss) steps=${STEPS:-600} ;;
  speed) steps=${SPEED_STEPS:-50}; read -r seeds _ <<< "$seeds" ;;
  count) steps=1; read -r seeds _ <<< "$seeds" ;;
  *) echo "ablation: MODE=$mode is none of loss, speed, count" >&2; exit 2 ;;
esac
[ -x "$bin" ] || { echo "ablation: $bin is not built" >&2; exit 2; }
[ -f "$data" ] || { echo "ablation: no corpus at $data (../shared/data; set DATA=...)" >&2; exit 2; }
[ "$tok" = byte ] || [ -e "$tok" ] || { echo "ablation: no tokenizer at $tok (set TOKENIZER=...)" >&2; exit 2; }
mkdir -p "$out"
head -c -"$eval_bytes" "$data" > "$out/train.txt"
tail -c "$eval_bytes" "$data" > "$out/eval.txt"

share_seed=(--ffn-share seed --ffn-share-group "$G" --ffn-share-rank "$R" --ffn-share-alpha "$A"
  --ffn-share-learn-alpha "$learn")
share_plain=(--ffn-share plain --ffn-share-group "$G")
mla=(--mla-kv-rank "$kvr" --mla-q-rank "$qr" --mla-rope-dim "$rd" --mla-latent-norm "$mnorm")
mtp=(--mtp-depth 1 --mtp-lambda "$lam")
row_flags() { # row -> flags on stdout, one per line
  case $1 in
    baseline | base_flops) ;;
    share_seed) printf '%s\n' "${share_seed[@]}" ;;
    share_plain) printf '%s\n' "${share_plain[@]}" ;;
    mla) printf '%s\n' "${mla[@]}" ;;
    mtp) printf '%s\n' "${mtp[@]}" ;;
    all) printf '%s\n' "${share_seed[@]}" "${mla[@]}" "${mtp[@]}" ;;
    *) echo "ablation: unknown row $1" >&2; exit 2 ;;
  esac
}

echo "== ablation ($mode): gpt2 L=$L C=$C NH=$NH T=$T B=$B, tokenizer $(basename "$tok"), $steps steps" \
  "($((steps * B * T)) tokens) per run, seeds: $seeds, $threads threads, share G=$G r=$R, MLA $kvr/$qr/$rd norm $mnorm," \
  "MTP lambda $lam, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
res="$out/results-$mode.tsv"
[ "${APPEND:-0}" = 1 ] || : > "$res"
for row in $rows; do
  flags_txt=$(row_flags "$row")
  mapfile -t flags <<< "$flags_txt"
  [ -n "${flags[0]:-}" ] || flags=()
  for seed in $seeds; do
    name=$row${TAG:-}
    run=$out/$mode-$name-s$seed
    st=$steps
    if [ "$row" = base_flops ]; then # the baseline given the MTP row's training FLOPs: more steps
      fb=$(sed -n 's/^training FLOPs *: .*(\([0-9.e+]*\) per token.*/\1/p' "$out/$mode-baseline-s$seed.log" 2> /dev/null || true)
      fm=$(sed -n 's/^training FLOPs *: .*(\([0-9.e+]*\) per token.*/\1/p' "$out/$mode-mtp-s$seed.log" 2> /dev/null || true)
      if [ -z "$fb" ] || [ -z "$fm" ]; then
        echo "ablation: base_flops needs the baseline and mtp runs of seed $seed in $out first" >&2
        exit 2
      fi
      st=$(awk -v s="$steps" -v a="$fm" -v b="$fb" 'BEGIN { printf "%d", s * a / b + 0.5 }')
    fi
    rm -rf "$run"
    echo "ablation: $name seed $seed: $st steps, ${flags[*]:-(defaults)} ($(date -u +%TZ))"
    "$bin" train --layout gpt2 --n-layer "$L" --d-model "$C" --n-head "$NH" --seq-len "$T" --batch-size "$B" \
      --data "$out/train.txt" --tokenizer "$tok" --val-frac 0.01 --val-every 0 --val-batches 1 \
      --max-steps "$st" --warmup-steps $((st / 10)) --lr "$lr" --min-lr "$(awk -v l="$lr" 'BEGIN{print l/10}')" \
      --seed "$seed" --threads "$threads" --log-every 100 --out "$run" "${extra[@]}" "${flags[@]}" > "$run.log" 2>&1 ||
      { echo "ablation: $name seed $seed failed: $(tail -3 "$run.log")" >&2; exit 1; }
    params=$(sed -n 's/^model: .*params \([0-9]*\) total.*/\1/p' "$run.log")
    flops=$(sed -n 's/^training FLOPs *: .*(\([0-9.e+]*\) per token.*/\1/p' "$run.log")
    tps=$(sed -n 's/^throughput *: \([0-9.]*\) tokens\/s.*/\1/p' "$run.log")
    kv=$(sed -n 's/^kv cache *: \([0-9]*\) bytes per token.*/\1/p' "$run.log")
    loss=0
    if [ "$mode" = loss ]; then
      loss=$("$bin" sample --run "$run" --threads "$threads" --eval "$out/eval.txt" --eval-tokens "$eval_tokens" 2>/dev/null |
        sed -n 's/^eval: .* loss \([0-9.]*\), perplexity.*/\1/p')
      [ -n "$loss" ] || { echo "ablation: $name seed $seed: no eval loss" >&2; exit 1; }
      echo "ablation: $name seed $seed: held-out loss $loss"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$seed" "$params" "$flops" "$tps" "$loss" "$kv" >> "$res"
  done
done

# non-embedding parameters: minus wte [Vp, C] and wpe [T, C] (Vp = V rounded up to 64)
read -r row0 seed0 _ < "$res" || { echo "ablation: no results in $res" >&2; exit 1; }
V=$(sed -n 's/^model: .* V=\([0-9]*\) .*/\1/p' "$out/$mode-$row0-s$seed0.log")
emb=$(((V + 63) / 64 * 64 * C + T * C))
echo
case $mode in
  loss) echo "== ablation table (held-out mean cross-entropy after $((steps * B * T)) training tokens; deltas vs" \
    "baseline; base_flops: more steps, the MTP row's training FLOPs; spread = (max - min) / mean over the seeds) ==" ;;
  speed) echo "== ablation timings ($steps steps, seed ${seeds%% *}, $threads threads; take on a quiet machine) ==" ;;
  count) echo "== ablation counts (V=$V, embeddings $emb parameters) ==" ;;
esac
awk -F'\t' -v emb="$emb" -v mode="$mode" '
  { r = $1; if (!(r in n)) { order[++k] = r; lo[r] = $6; hi[r] = $6 }
    n[r]++; p[r] = $3; f[r] = $4; t[r] += $5; l[r] += $6; kv[r] = $7
    if ($6 < lo[r]) lo[r] = $6; if ($6 > hi[r]) hi[r] = $6
    ls[r] = ls[r] (ls[r] == "" ? "" : " / ") $6 }
  END {
    b = order[1]
    if (mode == "speed") {
      printf "| %-11s | %9s | %10s | %8s |\n", "row", "FLOPs/tok", "tokens/s", "vs base"
      printf "|-------------|----------:|-----------:|---------:|\n"
      for (i = 1; i <= k; i++) { r = order[i]
        printf "| %-11s | %9.3g | %10.1f | %7.2fx |\n", r, f[r], t[r] / n[r], (t[r] / n[r]) / (t[b] / n[b]) }
      exit
    }
    if (mode == "count") {
      printf "| %-11s | %17s | %16s | %9s | %8s |\n", "row", "params", "non-emb params", "FLOPs/tok", "KV B/tok"
      printf "|-------------|------------------:|-----------------:|----------:|---------:|\n"
      for (i = 1; i <= k; i++) { r = order[i]
        printf "| %-11s | %9d (%+5.1f%%) | %8d (%+5.1f%%) | %9.3g | %8d |\n", r, p[r], 100 * (p[r] / p[b] - 1),
          p[r] - emb, 100 * ((p[r] - emb) / (p[b] - emb) - 1), f[r], kv[r] }
      exit
    }
    printf "| %-11s | %17s | %16s | %9s | %8s | %-17s | %6s | %8s | %8s |\n", "row", "params", "non-emb params",
      "FLOPs/tok", "val loss", "per seed", "spread", "vs base", "KV B/tok"
    printf "|-------------|------------------:|-----------------:|----------:|---------:|-------------------|-------:|---------:|---------:|\n"
    for (i = 1; i <= k; i++) {
      r = order[i]; lm = l[r] / n[r]; lb = l[b] / n[b]
      printf "| %-11s | %9d (%+5.1f%%) | %8d (%+5.1f%%) | %9.3g | %8.4f | %-17s | %5.2f%% | %+7.2f%% | %8d |\n", r, p[r],
        100 * (p[r] / p[b] - 1), p[r] - emb, 100 * ((p[r] - emb) / (p[b] - emb) - 1), f[r], lm, ls[r],
        100 * (hi[r] - lo[r]) / lm, 100 * (lm / lb - 1), kv[r]
    }
  }' "$res" | tee "$out/table-$mode.md"
echo "ablation: runs, logs and results-$mode.tsv in $out"
