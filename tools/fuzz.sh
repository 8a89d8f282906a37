#!/usr/bin/env bash
# Coverage-guided fuzzing of lowbit's readers with libFuzzer and AddressSanitizer.
#   tools/fuzz.sh TARGET [SECONDS] [extra libFuzzer flags]
# TARGET: onnx ops npy npz idx image tokenizer text config checkpoint (or all); ops builds one-node
# graphs of every implemented op from the bytes and runs them. Builds Fuzz/ (the
# fuzz package, instrumented), seeds .cache/fuzz/corpus/TARGET from tools/fuzz_seeds.py, runs for
# SECONDS (default 60) with a 10 s per-input timeout and a 4 GiB memory limit, and keeps new
# inputs in the corpus. A finding (crash, sanitizer report, timeout, out of memory) is written to
# .cache/fuzz/findings/TARGET/ and the script exits non-zero; make the input a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: tools/fuzz.sh TARGET [SECONDS] [libFuzzer flags]}
seconds=${2:-60}
shift $(( $# > 1 ? 2 : 1 ))
(cd Fuzz && swift build -c release -Xswiftc -sanitize=fuzzer,address >/dev/null)
binary=Fuzz/.build/release/lowbit-fuzz
corpus=.cache/fuzz/corpus
[ -d "$corpus/onnx" ] || python3 tools/fuzz_seeds.py "$corpus"
mkdir -p "$corpus/ops"
targets=$target
[ "$target" = all ] && targets="onnx ops npy npz idx image tokenizer text config checkpoint"
status=0
for t in $targets; do
  mkdir -p ".cache/fuzz/findings/$t"
  echo "== $t: $seconds s"
  LOWBIT_FUZZ_TARGET=$t LOWBIT_FUZZ_TOKENIZER="${LOWBIT_SHARED:-../shared}/data/minilm/tokenizer.json" \
    "$binary" "$corpus/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=65536 \
    -artifact_prefix=".cache/fuzz/findings/$t/" -print_final_stats=1 "$@" 2>&1 | tail -4 || status=1
done
exit $status
