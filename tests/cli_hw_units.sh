#!/bin/sh
# cli_hw_units.sh: `frugal hw` and the start of `frugal train` name the unit each
# precision's GEMMs run on, read from the dispatch table in effect: FG_HW_DISABLE,
# --kernels / FG_KERNELS change the answer.
# Usage: sh tests/cli_hw_units.sh build/frugal   (run by ctest in a fresh temporary directory)
F=${1:?usage: cli_hw_units.sh FRUGAL}
case $F in /*) ;; *) F=$(pwd)/$F ;; esac
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

unit() { # FILE PRECISION: that precision's line of the units section
  sed -n '/^units/,/^threads/p' "$1" | grep "^  $2 "
}

env -u FG_HW_DISABLE -u FG_KERNELS "$F" hw > auto.txt 2> err.txt || fail "frugal hw: exit $? $(cat err.txt)"
for p in fp32 bf16 fp8; do
  [ "$(unit auto.txt $p | wc -l)" -eq 1 ] || fail "frugal hw: no single $p line in: $(cat auto.txt)"
done
unit auto.txt fp32 | grep -q "matmul=blas .*sgemm through OpenBLAS" || fail "fp32 (auto): $(unit auto.txt fp32)"
unit auto.txt fp8 | grep -q "fp8 storage" || fail "fp8: $(unit auto.txt fp8)"
if grep -q '+avx512_bf16' auto.txt; then
  unit auto.txt bf16 | grep -q "bgemm=avx512bf16 .*vdpbf16ps" || fail "bf16 on an AVX512-BF16 CPU: $(unit auto.txt bf16)"
else
  echo "note: this CPU lacks AVX512-BF16; the auto line is the fallback already"
fi

# the bf16 unit masked: conversion + sgemm, and the line changes (on a CPU that had it)
FG_HW_DISABLE=avx512bf16 "$F" hw > nobf16.txt 2> /dev/null || fail "FG_HW_DISABLE=avx512bf16 frugal hw: exit $?"
unit nobf16.txt bf16 | grep -q "bgemm=blas .*conversion + OpenBLAS sgemm" ||
  fail "bf16 with FG_HW_DISABLE=avx512bf16: $(unit nobf16.txt bf16)"
if grep -q '+avx512_bf16' auto.txt && [ "$(unit auto.txt bf16)" = "$(unit nobf16.txt bf16)" ]; then
  fail "FG_HW_DISABLE=avx512bf16 left the bf16 line as it was"
fi
unit nobf16.txt fp32 | grep -q "matmul=blas" || fail "fp32 with the bf16 unit masked: $(unit nobf16.txt fp32)"
FG_HW_DISABLE=avx512bf16,avx512 "$F" hw > noavx.txt 2> /dev/null || fail "FG_HW_DISABLE=avx512bf16,avx512: exit $?"
unit noavx.txt bf16 | grep -q "bgemm=blas" || fail "bf16 with avx512 masked: $(unit noavx.txt bf16)"

# the reference kernels, by flag and by environment
for how in "--kernels ref" "FG_KERNELS=ref"; do
  case $how in
    --*) "$F" hw --kernels ref > ref.txt 2> /dev/null ;;
    *) FG_KERNELS=ref "$F" hw > ref.txt 2> /dev/null ;;
  esac
  unit ref.txt fp32 | grep -q "matmul=ref .*scalar reference" || fail "$how: fp32 $(unit ref.txt fp32)"
  unit ref.txt bf16 | grep -q "bgemm=ref .*scalar reference" || fail "$how: bf16 $(unit ref.txt bf16)"
done

# the start of a training run prints the same table
i=0
while [ $i -lt 300 ]; do
  echo "the cat sat on the mat and the dog sat on the log, line $i." >> corpus.txt
  i=$((i + 1))
done
FG_HW_DISABLE=avx512bf16 "$F" train --data corpus.txt --out run --n-layer 1 --d-model 32 --n-head 2 --seq-len 16 \
  --batch-size 2 --max-steps 1 --val-batches 1 --precision bf16 > train.txt 2>&1 || fail "train: exit $? $(tail -5 train.txt)"
grep -q "^units (this run: precision bf16):" train.txt || fail "train start: no units header: $(head -20 train.txt)"
grep -q "^  bf16  bgemm=blas .*conversion + OpenBLAS sgemm" train.txt ||
  fail "train start under FG_HW_DISABLE=avx512bf16: $(grep '^  bf16' train.txt)"
grep -q "^optimizer state : m+v .* (fp32 moments" train.txt || fail "cost summary: no optimizer-state line"

[ $fails -eq 0 ] && echo "cli_hw_units: all passed"
[ $fails -eq 0 ]
