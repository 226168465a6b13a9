#!/usr/bin/env bash
# lint.sh: clang-format (no diffs allowed) and cppcheck (no findings allowed) over
# the C sources. Installs the two tools when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
for t in clang-format cppcheck; do
  command -v $t >/dev/null || { SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo; $SUDO apt-get install -y -qq $t; }
done
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find src include tests bench -name '*.[ch]')
clang-format --dry-run -Werror $files
cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability --inline-suppr \
  --suppress=missingIncludeSystem -I include -I tests $files
echo "lint: clang-format and cppcheck clean ($(echo $files | wc -w) files)"
