#!/usr/bin/env bash
# int8_llamacpp.sh: `frugal sample --int8` against llama.cpp's Q8_0 on the same llama-layout
# model (issue 14, docs/PERFORMANCE.md section 11): prompt processing and decoding tokens/s
# at the same thread count, with Frugal fp32 as the third row, and the ratios from this
# one run. The model: a llama-layout L12 C768 (byte tokenizer, one training step: the
# weights' values do not change the speed), written once as Frugal int8
# (`frugal convert --quantize int8`) and as GGUF Q8_0 (`frugal convert --to-gguf --type
# q8_0`) for llama.cpp through llama-cpp-python (the peers' venv, tools/gguf_check.py).
#   prompt processing: windows of SEQ tokens, each from an empty cache, only the last
#     position's logits computed on both sides (Frugal: `sample --eval --prefill`, the
#     KV-cache prefill of fg_model_generate; llama.cpp: eval() of the window), EVAL_TOKENS
#     tokens in all. (Until 2026-12-06 Frugal's row was `sample --eval`, the loss pass,
#     which computes every position's logits and the loss: not what llama.cpp does.)
#   decoding: N tokens one at a time after a one-token prompt (Frugal: `sample --n N`;
#     llama.cpp: eval() of one token per step, KV cache f16, its default)
# Timings are only worth quoting from a quiet machine.
# Usage: bench/int8_llamacpp.sh [BUILD_DIR=build] [OUT_DIR=runs/int8_llamacpp]
# Env: THREADS (2), N_LAYER (12), D_MODEL (768), N_HEAD (12), SEQ (128), N (64),
#      EVAL_TOKENS (4096), PYTHON (the peers' venv python), DATA (tinyshakespeare).
set -euo pipefail
build=${1:-build}
out=${2:-runs/int8_llamacpp}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$build/frugal
threads=${THREADS:-2}
seq=${SEQ:-128}
n=${N:-64}
evt=${EVAL_TOKENS:-4096}
. "$root/bench/peers_python.sh"
py=$PY
data=${DATA:-$root/../shared/data/tinyshakespeare.txt}
[ -x "$bin" ] || { echo "int8_llamacpp: $bin is not built" >&2; exit 2; }
[ -f "$data" ] || { echo "int8_llamacpp: no $data (../shared/data)" >&2; exit 2; }
"$py" -c "import llama_cpp" 2> /dev/null || { echo "int8_llamacpp: skipped: no llama_cpp in $py" >&2; exit 77; }
mkdir -p "$out"
run=$out/run
head -c 300000 "$data" > "$out/in.txt"
if [ ! -d "$run/final" ]; then
  echo "int8_llamacpp: a llama-layout L${N_LAYER:-12} C${D_MODEL:-768} model (1 step)"
  "$bin" train --data "$out/in.txt" --out "$run" --layout llama --n-layer "${N_LAYER:-12}" \
    --d-model "${D_MODEL:-768}" --n-head "${N_HEAD:-12}" --max-steps 1 --batch-size 1 --seq-len "$seq" \
    --tokenizer byte --threads "$threads" --val-every 0 --overwrite 1 > "$out/train.log" 2>&1
fi
"$bin" convert --quantize int8 --run "$run" > /dev/null
"$bin" convert --to-gguf "$out/model_q8_0.gguf" --run "$run" --type q8_0 > /dev/null

decode() { # extra flags: tokens/s of `frugal sample` (stderr line "sample: ... tokens/s (...)")
  "$bin" sample --run "$run" --n "$n" --threads "$threads" --seed 1 "$@" 2>&1 > /dev/null |
    sed -n 's/^sample: .* s, \([0-9.]*\) tokens\/s.*/\1/p'
}
pp() {
  "$bin" sample --run "$run" --n 1 --threads "$threads" --eval "$out/in.txt" --eval-tokens "$evt" --prefill "$@" 2> /dev/null |
    sed -n 's/^eval: \([0-9.]*\) tokens\/s.*/\1/p'
}

f_pp=$(pp)
f_dec=$(decode)
i_pp=$(pp --int8)
i_dec=$(decode --int8)
read -r l_pp l_dec < <("$py" - "$out/model_q8_0.gguf" "$out/in.txt" "$seq" "$evt" "$n" "$threads" << 'EOF'
import sys, time
from llama_cpp import Llama
path, text, T, total, n, th = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
ids = list(open(text, "rb").read())  # the byte tokenizer: token = byte
llm = Llama(model_path=path, n_ctx=T, n_batch=T, n_threads=th, n_threads_batch=th, verbose=False, seed=0)
llm.reset(); llm.eval(ids[:T])  # warm-up (first-call allocations)
done, t0 = 0, time.perf_counter()
for w in range(0, len(ids) - T, T):
    if done >= total:
        break
    llm.reset()
    llm.eval(ids[w:w + T])
    done += T
pp = done / (time.perf_counter() - t0)
llm.reset()
llm.eval(ids[:1])
t0 = time.perf_counter()
for i in range(n):
    llm.eval([ids[1 + i]])
print(f"{pp:.1f} {n / (time.perf_counter() - t0):.1f}")
EOF
)

echo
echo "== llama-layout L${N_LAYER:-12} C${D_MODEL:-768}, $threads threads: tokens/s (prompt processing: windows of $seq, $evt tokens; decoding: $n tokens) =="
awk -v fp="$f_pp" -v fd="$f_dec" -v ip="$i_pp" -v id="$i_dec" -v lp="$l_pp" -v ld="$l_dec" 'BEGIN {
  printf "%-26s %18s %12s\n", "", "prompt processing", "decoding"
  printf "%-26s %18.1f %12.1f\n", "Frugal fp32", fp, fd
  printf "%-26s %18.1f %12.1f\n", "Frugal int8 (sample --int8)", ip, id
  printf "%-26s %18.1f %12.1f\n", "llama.cpp Q8_0", lp, ld
  printf "%-26s %17.2fx %11.2fx\n", "Frugal int8 / fp32", ip / fp, id / fd
  printf "%-26s %17.2fx %11.2fx\n", "Frugal int8 / llama Q8_0", ip / lp, id / ld
}'
ls -l "$run/model.int8" "$out/model_q8_0.gguf" | awk '{print "  " $5 " bytes  " $NF}'
