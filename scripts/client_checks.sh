#!/usr/bin/env bash
# client_checks.sh: the export formats checked by their real clients (issue 18):
# tools/hf_check.py (transformers) and tools/gguf_check.py (llama.cpp through
# llama-cpp-python), run by `make test` after the ctest suite. Each exits 77 with a
# "skipped" line when its Python packages cannot be imported (the product and its tests
# never need Python); any other non-zero exit fails.
# Usage: scripts/client_checks.sh FRUGAL_BIN   (PYTHON=... picks the interpreter; default
#        the peers venv of tools/setup_peers.sh, then /work/peers/venv, then python3)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build-test/frugal}
PY=${PYTHON:-}
for cand in .venv/bin/python /work/peers/venv/bin/python python3; do
  [ -n "$PY" ] && break
  command -v "$cand" > /dev/null 2>&1 && PY=$cand
done
for t in hf_check gguf_check; do
  rc=0
  OMP_NUM_THREADS=2 nice -n 10 "$PY" tools/$t.py --frugal "$bin" || rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
    echo "client_checks: $t failed ($rc)" >&2
    exit "$rc"
  fi
done
