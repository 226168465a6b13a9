# shellcheck shell=bash
# peers_python.sh: sourced by the bench scripts that run Python peers or tools; sets PY to
# $PYTHON if given, else the peers' venv of tools/setup_peers.sh ($FG_VENV or .venv at the
# repository root), else python3 (the scripts then skip the rows whose packages are missing).
_fg_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-}
[ -n "$PY" ] || { [ -x "${FG_VENV:-$_fg_root/.venv}/bin/python" ] && PY=${FG_VENV:-$_fg_root/.venv}/bin/python; } || PY=python3
