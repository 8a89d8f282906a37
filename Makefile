# lowbit — the two entry points are `make demo` and `make test`; both install what they need.
SHELL := /bin/bash
SWIFT ?= swift
PYTHON ?= python3
BIN := .build/release/lowbit
APT_PACKAGES := libopenblas-dev zlib1g-dev libjpeg62-turbo-dev libpng-dev pkg-config dataset-fashion-mnist libopenmpi-dev openmpi-bin chromium
PY_PACKAGES := onnx onnxruntime numpy pytest pillow tokenizers openvino
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: check-imports all deps deps-system deps-python build demo test test-swift test-python check-proto bench clean fuzz sanitize

all: build

deps: deps-system deps-python

# Debian packages: OpenBLAS, zlib, libjpeg-turbo, libpng and OpenMPI for the build (mpirun for data-parallel training),
# Fashion-MNIST for the demo and tests, headless Chromium for the tests that render the HTML reports.
deps-system:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

# Python is test tooling only: ONNX Runtime is the reference executor, OpenVINO the second runtime the deployment tests load files in.
deps-python:
	@$(PYTHON) -c "import onnx, onnxruntime, numpy, pytest, PIL, tokenizers, openvino" 2>/dev/null || \
	  $(PYTHON) -m pip install -q --disable-pip-version-check $(PY_PACKAGES)

build: deps-system
	$(SWIFT) build -c release --product lowbit

demo: build
	$(BIN) demo --models assets/models --output out/demo

test: deps build check-imports test-swift test-python

check-imports:
	tools/check-imports.sh

# The environment `lowbit` gives itself at startup (setStartupEnvironment in Sources/LowbitCLI/Lowbit.swift:
# OpenBLAS without its own thread pool, glibc keeping freed blocks on the heap), so the tests run the
# kernels under the same OpenBLAS and malloc set-up as the command. LowbitCoreTests checks it.
CLI_ENV := OPENBLAS_NUM_THREADS=1 GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824 LOWBIT_CLI_ENV=1

test-swift:
	$(SWIFT) build --build-tests
	$(CLI_ENV) $(SWIFT) test --skip-build

test-python:
	LOWBIT_BIN=$(CURDIR)/$(BIN) $(PYTHON) -m pytest tests -q

# Regenerates the ONNX protobuf code and fails if it differs from the committed file.
check-proto:
	@d=$$(mktemp -d) && tools/regenerate-onnx-proto.sh $$d && diff -q $$d/onnx.pb.swift Sources/LowbitONNX/Generated/onnx.pb.swift && echo "generated code is up to date"

bench: build deps-python
	$(PYTHON) benchmarks/bench_fp32.py

# Coverage-guided fuzzing of every reader (libFuzzer + AddressSanitizer), FUZZ_SECONDS per target;
# not part of `make test`. Findings go to .cache/fuzz/findings (tools/fuzz.py).
FUZZ_SECONDS ?= 60
fuzz: deps
	$(PYTHON) tools/fuzz.py --seconds $(FUZZ_SECONDS) --json benchmarks/results/fuzz.json

# The Swift tests under AddressSanitizer, in their own build folder. Leak checking is off:
# LeakSanitizer reports Swift's global and static storage and XCTest's suite objects, which live
# until the process exits. (Swift 6.3 on Linux has no UndefinedBehaviorSanitizer mode:
# `-sanitize=undefined` is refused; Swift's own overflow and bounds checks trap instead.)
# OpenBLAS is not instrumented: LOWBIT_SGEMM_PROBE checks, before every sgemm, that each row of
# A, B and C it will touch is live memory (AddressSanitizer's __asan_region_is_poisoned), so an
# sgemm called with a wrong size or leading dimension is reported like a Swift out-of-bounds access.
# Then the threaded suites (kernels, training, AdaRound, range observers, parallel decoding) under
# ThreadSanitizer.
THREADED_SUITES := Convolution|Trainer|TrainingLoop|AdaRound|RangeObserver|RangeHistogram|ImagePreprocessing|TextData|DataColumn|Parallel|Calibration
sanitize: deps-system
	$(CLI_ENV) ASAN_OPTIONS=detect_leaks=0 $(SWIFT) test --sanitize=address --scratch-path .build-sanitize -Xswiftc -DLOWBIT_SGEMM_PROBE
	$(CLI_ENV) $(SWIFT) test --sanitize=thread --scratch-path .build-tsan --filter '$(THREADED_SUITES)'

clean:
	rm -rf .build .build-sanitize .build-asan .build-tsan .build-ubsan .cache Fuzz/.build
