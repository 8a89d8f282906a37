#!/usr/bin/env bash
# Regenerates Sources/LowbitONNX/Generated/onnx.pb.swift from tools/proto/onnx.proto
# (the onnx.proto of the `onnx` PyPI package, version in tools/proto/VERSION).
# Needs Debian's protobuf-compiler and swift-protobuf's plugin built at the pinned version:
#   git clone <swift-protobuf> /tmp/sp && (cd /tmp/sp && git checkout 1.39.0 && swift build -c release --product protoc-gen-swift)
#   PROTOC_GEN_SWIFT=/tmp/sp/.build/release/protoc-gen-swift tools/regenerate-onnx-proto.sh
# `make check-proto` regenerates into a temporary folder and diffs against the committed file.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/../Sources/LowbitONNX/Generated"}
plugin=${PROTOC_GEN_SWIFT:-$(command -v protoc-gen-swift)}
mkdir -p "$out"
protoc --plugin=protoc-gen-swift="$plugin" --proto_path="$here/proto" \
  --swift_opt=Visibility=Internal --swift_out="$out" onnx.proto
