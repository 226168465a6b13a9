#!/usr/bin/env bash
# setup_peers.sh: one command for the benchmark peers: a Python venv in .venv (or
# $FG_VENV) with the pinned versions of tools/requirements-peers.txt; then run the
# benchmarks with the venv's python first on PATH (the line printed at the end).
# torch: FG_TORCH=pypi (default: PyPI's CUDA build, ~5.4 GB with its nvidia-* wheels),
#        FG_TORCH=cpu (PyTorch's own CPU-only wheel index, ~200 MB: its address in FG_TORCH_INDEX),
#        FG_TORCH=none (skip torch: bench_train.sh then prints "torch: not installed").
# Frugal's build and tests never need this venv. Re-running it is safe (pip skips what
# is installed). Usage: tools/setup_peers.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${FG_VENV:-$root/.venv}
torch_from=${FG_TORCH:-pypi}
req="$root/tools/requirements-peers.txt"
py=${PYTHON:-python3}

case "$torch_from" in pypi|cpu|none) ;; *) echo "setup_peers: FG_TORCH must be pypi, cpu or none (got '$torch_from')" >&2; exit 2 ;; esac
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
  { echo "setup_peers: $py is older than 3.10 (datatrove 0.10.1 and torch 2.15 need >= 3.10)" >&2; exit 2; }
"$py" -c 'import venv, ensurepip' 2>/dev/null ||
  { echo "setup_peers: $py cannot create a venv with pip (Debian: apt-get install python3-venv)" >&2; exit 2; }
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check)

# everything but torch, at the pinned versions
grep -v '^torch==' "$req" > "$venv/requirements-no-torch.txt"
"${pip[@]}" -r "$venv/requirements-no-torch.txt"
torch_pin=$(sed -n 's/^\(torch==[^ ]*\).*/\1/p' "$req")
case "$torch_from" in
  pypi) echo "setup_peers: installing $torch_pin from PyPI (the CUDA build, ~5.4 GB)"; "${pip[@]}" "$torch_pin" ;;
  cpu) echo "setup_peers: installing $torch_pin CPU-only from PyTorch's index"
       "${pip[@]}" "$torch_pin" --index-url "${FG_TORCH_INDEX:?FG_TORCH=cpu needs FG_TORCH_INDEX, the URL of the PyTorch CPU wheel index}" ;;
  none) echo "setup_peers: torch skipped (FG_TORCH=none)" ;;
esac

# the imports the benchmark tools make, so a missing piece shows here and not midway
"$venv/bin/python" - "$torch_from" <<'PY'
import importlib, sys
mods = ["numpy", "tiktoken", "tokenizers", "datatrove", "regex", "orjson", "spacy", "xxhash"]
if sys.argv[1] != "none":
    mods.insert(0, "torch")
bad = []
for m in mods:
    try:
        v = getattr(importlib.import_module(m), "__version__", "?")
        print(f"  {m:10s} {v}")
    except Exception as e:  # noqa: BLE001 - report every failure, then fail once
        bad.append(f"{m}: {e}")
if bad:
    sys.exit("setup_peers: imports failed:\n  " + "\n  ".join(bad))
PY
echo "setup_peers: ready. Run the benchmarks with:  PATH=\"$venv/bin:\$PATH\" bench/bench_train.sh ..."
