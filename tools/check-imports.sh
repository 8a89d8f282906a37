#!/usr/bin/env bash
# Checks the one-way target dependencies (DESIGN.md) by reading import lines:
# Core imports nothing of ours; Data only Core; Quant never ONNX, Report or CLI; ONNX never CLI or Quant;
# Train only Core and Data (Quant may import Train, for QAT); Distributed (MPI) only Core and Train,
# and only Distributed imports CMPI, so training code and everything below the CLI stay free of MPI.
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
check LowbitCore LowbitData LowbitQuant LowbitONNX LowbitReport LowbitCLI LowbitTrain LowbitDistributed CMPI
check LowbitData LowbitQuant LowbitONNX LowbitReport LowbitCLI LowbitDistributed CMPI
check LowbitQuant LowbitONNX LowbitReport LowbitCLI LowbitDistributed CMPI
check LowbitONNX LowbitQuant LowbitReport LowbitCLI LowbitDistributed CMPI
check LowbitReport LowbitData LowbitQuant LowbitONNX LowbitCLI LowbitDistributed CMPI
check LowbitTrain LowbitQuant LowbitONNX LowbitReport LowbitCLI LowbitDistributed CMPI
check LowbitDistributed LowbitData LowbitQuant LowbitONNX LowbitReport LowbitCLI
check LowbitCLI CMPI
[ $fail = 0 ] && echo "import directions: ok"
exit $fail
