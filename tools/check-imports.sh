#!/usr/bin/env bash
# Checks the one-way target dependencies (DESIGN.md) by reading import lines:
# Core imports nothing of ours; Data only Core; Quant never ONNX, Report or CLI; ONNX never CLI or Quant;
# Train only Core and Data (Quant may import Train, for QAT).
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
check() {  # target, forbidden modules...
  local target=$1; shift
  for module in "$@"; do
    if grep -rnE "^(@testable )?import $module\b" "Sources/$target" >/dev/null; then
      echo "forbidden: Sources/$target imports $module:"; grep -rnE "^(@testable )?import $module\b" "Sources/$target"; fail=1
    fi
  done
}
check LowbitCore LowbitData LowbitQuant LowbitONNX LowbitReport LowbitCLI LowbitTrain
check LowbitData LowbitQuant LowbitONNX LowbitReport LowbitCLI
check LowbitQuant LowbitONNX LowbitReport LowbitCLI
check LowbitONNX LowbitQuant LowbitReport LowbitCLI
check LowbitReport LowbitData LowbitQuant LowbitONNX LowbitCLI
check LowbitTrain LowbitQuant LowbitONNX LowbitReport LowbitCLI
[ $fail = 0 ] && echo "import directions: ok"
exit $fail
