#!/usr/bin/env bash
# deps.sh: installs the Debian packages Frugal builds against, only those missing.
# Used by `make demo`, `make test` and .ci/run; safe to run repeatedly. `fortunes` (with
# fortunes-min) and `bible-kjv` (with bible-kjv-text) are the demo's corpus when there is
# no ../shared (scripts/demo.sh; tests/test_demo.sh runs on them).
set -euo pipefail
pkgs=(build-essential cmake pkg-config libopenblas-dev libopenblas0-pthread libjansson-dev libzstd-dev
      zlib1g-dev libpcre2-dev libutf8proc-dev libopenmpi-dev openmpi-bin fortunes bible-kjv clang libclang-rt-14-dev libomp-14-dev libopenblas0-openmp
      clang-format cppcheck git)
# data (src/data): HTML parser for main-content extraction, charset detection fallback
pkgs+=(libxml2-dev libuchardet-dev libcld2-dev) # + language identification
pkgs+=(gnuplot-nox) # `frugal plot` draws through gnuplot (SVG, PNG via cairo)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
