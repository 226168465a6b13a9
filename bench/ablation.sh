#!/usr/bin/env bash
# ablation.sh: the architecture levers of issue 15 side by side (its "Must show 2"): one
# small gpt2-layout model trained on tinyshakespeare with the GPT-2 tokenizer, the same
# steps, batch and data for every row and seed, rows
#   baseline | FFN sharing, seed form | FFN sharing, plain | MLA | MTP D=1 | all together
# (MLA only when `frugal train --help` offers --mla-kv-rank, else skipped with a message;
# "all" = seed sharing + MLA if offered + MTP). Columns: stored parameters (and without
# the embeddings, where the levers act), FLOPs per training token, training tokens/s,
# held-out loss after the same tokens (`frugal sample --eval` on the last EVAL_BYTES of
# the text, never trained on; MTP's modules do not enter it), per seed and the mean, and
# KV-cache bytes per token in generation (fp32: 2 L C 4 for attention, (kv_rank +
# rope_dim) L 4 for MLA's latent + decoupled RoPE key).
# Usage: bench/ablation.sh [BUILD_DIR=build] [OUT_DIR=runs/ablation]
# Env (defaults: a few minutes on 16 cores): STEPS (200), SEEDS ("1 2"), THREADS (all
#   cores), LAYERS (4), DMODEL (128), HEADS (4), SEQ (64), BATCH (8), LR (0.002),
#   SHARE_GROUP (2), SHARE_RANK (16), SHARE_ALPHA (0.5), SHARE_LEARN (true),
#   MLA_KV_RANK (DMODEL/4), MLA_Q_RANK (DMODEL/2), MLA_ROPE_DIM (head size / 2),
#   MTP_LAMBDA (0.3), EVAL_BYTES (60000), EVAL_TOKENS (0 = all of them),
#   ROWS (default "baseline share_seed share_plain mla mtp all"), EXTRA (flags added to
#   every row, e.g. EXTRA="--n-expert 8 --n-expert-active 2 --d-expert 64" for MoE),
#   DATA (../shared/data/tinyshakespeare.txt), TOKENIZER (../shared/data/gpt2).
set -euo pipefail
build=${1:-build}
out=${2:-runs/ablation}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$build/frugal
steps=${STEPS:-200}
seeds=${SEEDS:-1 2}
threads=${THREADS:-$(nproc)}
L=${LAYERS:-4}
C=${DMODEL:-128}
NH=${HEADS:-4}
T=${SEQ:-64}
B=${BATCH:-8}
lr=${LR:-0.002}
G=${SHARE_GROUP:-2}
R=${SHARE_RANK:-16}
A=${SHARE_ALPHA:-0.5}
learn=${SHARE_LEARN:-true}
kvr=${MLA_KV_RANK:-$((C / 4))}
qr=${MLA_Q_RANK:-$((C / 2))}
rd=${MLA_ROPE_DIM:-$((C / NH / 2))}
lam=${MTP_LAMBDA:-0.3}
eval_bytes=${EVAL_BYTES:-60000}
eval_tokens=${EVAL_TOKENS:-0}
rows=${ROWS:-baseline share_seed share_plain mla mtp all}
data=${DATA:-$root/../shared/data/tinyshakespeare.txt}
tok=${TOKENIZER:-$root/../shared/data/gpt2}
read -r -a extra <<< "${EXTRA:-}"
[ -x "$bin" ] || { echo "ablation: $bin is not built" >&2; exit 2; }
[ -f "$data" ] || { echo "ablation: no corpus at $data (../shared/data; set DATA=...)" >&2; exit 2; }
[ -e "$tok" ] || { echo "ablation: no tokenizer at $tok (set TOKENIZER=...)" >&2; exit 2; }
mkdir -p "$out"
head -c -"$eval_bytes" "$data" > "$out/train.txt"
tail -c "$eval_bytes" "$data" > "$out/eval.txt"

has_mla=0
"$bin" train --help 2>&1 | grep -q -- '--mla-kv-rank' && has_mla=1
[ $has_mla = 1 ] || echo "ablation: $bin train has no --mla-kv-rank (frugal train --help): MLA row skipped, 'all' without MLA"

share_seed=(--ffn-share seed --ffn-share-group "$G" --ffn-share-rank "$R" --ffn-share-alpha "$A"
  --ffn-share-learn-alpha "$learn")
share_plain=(--ffn-share plain --ffn-share-group "$G")
mla=(--mla-kv-rank "$kvr" --mla-q-rank "$qr" --mla-rope-dim "$rd")
mtp=(--mtp-depth 1 --mtp-lambda "$lam")
row_flags() { # row -> flags on stdout, one per line; status 1 = skip
  case $1 in
    baseline) ;;
    share_seed) printf '%s\n' "${share_seed[@]}" ;;
    share_plain) printf '%s\n' "${share_plain[@]}" ;;
    mla) [ $has_mla = 1 ] || return 1; printf '%s\n' "${mla[@]}" ;;
    mtp) printf '%s\n' "${mtp[@]}" ;;
    all) printf '%s\n' "${share_seed[@]}" "${mtp[@]}"; [ $has_mla = 0 ] || printf '%s\n' "${mla[@]}" ;;
    *) echo "ablation: unknown row $1" >&2; exit 2 ;;
  esac
}
kv_bytes() { # row -> KV-cache bytes per token (fp32)
  case $1 in
    mla | all) if [ $has_mla = 1 ]; then echo $(((kvr + rd) * L * 4)); else echo $((2 * L * C * 4)); fi ;;
    *) echo $((2 * L * C * 4)) ;;
  esac
}

echo "== ablation: gpt2 L=$L C=$C NH=$NH T=$T B=$B, $steps steps ($((steps * B * T)) tokens) per run, seeds: $seeds," \
  "$threads threads, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
res="$out/results.tsv"
: > "$res"
for row in $rows; do
  if ! flags_txt=$(row_flags "$row"); then
    continue
  fi
  mapfile -t flags <<< "$flags_txt"
  [ -n "${flags[0]:-}" ] || flags=()
  for seed in $seeds; do
    run=$out/$row-s$seed
    rm -rf "$run"
    echo "ablation: $row seed $seed: ${flags[*]:-(defaults)}"
    "$bin" train --layout gpt2 --n-layer "$L" --d-model "$C" --n-head "$NH" --seq-len "$T" --batch-size "$B" \
      --data "$out/train.txt" --tokenizer "$tok" --val-frac 0.01 --val-every 0 --val-batches 1 \
      --max-steps "$steps" --warmup-steps $((steps / 10)) --lr "$lr" --min-lr "$(awk -v l="$lr" 'BEGIN{print l/10}')" \
      --seed "$seed" --threads "$threads" --log-every 50 --out "$run" "${extra[@]}" "${flags[@]}" > "$run.log" 2>&1 ||
      { echo "ablation: $row seed $seed failed: $(tail -3 "$run.log")" >&2; exit 1; }
    params=$(sed -n 's/^model: .*params \([0-9]*\) total.*/\1/p' "$run.log")
    flops=$(sed -n 's/^training FLOPs *: .*(\([0-9.e+]*\) per token.*/\1/p' "$run.log")
    tps=$(sed -n 's/^throughput *: \([0-9.]*\) tokens\/s.*/\1/p' "$run.log")
    loss=$("$bin" sample --run "$run" --threads "$threads" --eval "$out/eval.txt" --eval-tokens "$eval_tokens" 2>/dev/null |
      sed -n 's/^eval: .* loss \([0-9.]*\), perplexity.*/\1/p')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$row" "$seed" "$params" "$flops" "$tps" "$loss" "$(kv_bytes "$row")" >> "$res"
  done
done

# non-embedding parameters: minus wte [Vp, C] and wpe [T, C] (Vp = V rounded up to 64)
V=$(sed -n 's/^model: .* V=\([0-9]*\) .*/\1/p' "$(ls "$out"/*.log | head -1)")
emb=$(((V + 63) / 64 * 64 * C + T * C))
echo
echo "== ablation table (loss: held-out mean cross-entropy after $((steps * B * T)) training tokens; deltas vs baseline) =="
awk -F'\t' -v emb="$emb" '
  { r = $1; if (!(r in n)) order[++k] = r; n[r]++; p[r] = $3; f[r] = $4; t[r] += $5; l[r] += $6; kv[r] = $7
    ls[r] = ls[r] (ls[r] == "" ? "" : " / ") $6 }
  END {
    printf "| %-11s | %17s | %15s | %9s | %10s | %8s | %-17s | %8s | %8s |\n", "row", "params", "non-emb params",
      "FLOPs/tok", "tokens/s", "val loss", "per seed", "vs base", "KV B/tok"
    printf "|-------------|------------------:|----------------:|----------:|-----------:|---------:|-------------------|---------:|---------:|\n"
    b = order[1]
    for (i = 1; i <= k; i++) {
      r = order[i]; lm = l[r] / n[r]; lb = l[b] / n[b]
      printf "| %-11s | %9d (%+4.0f%%) | %8d (%+4.0f%%) | %9.3g | %10.1f | %8.4f | %-17s | %+7.2f%% | %8d |\n", r, p[r],
        100 * (p[r] / p[b] - 1), p[r] - emb, 100 * ((p[r] - emb) / (p[b] - emb) - 1), f[r], t[r] / n[r], lm, ls[r],
        100 * (lm / lb - 1), kv[r]
    }
  }' "$res" | tee "$out/table.md"
echo "ablation: runs, logs and results.tsv in $out"
