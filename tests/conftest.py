"""Shared fixtures for lowbit's Python tests (parity with ONNX Runtime, accuracy, CLI, info).

Run from the repo root:  python3 -m pytest tests -q

Environment:
  LOWBIT_BIN     the CLI binary (default <repo>/.build/release/lowbit)
  LOWBIT_SHARED  the shared models/data folder (default <repo>/../shared)
  LOWBIT_MODEL_CACHE  where filled torchvision models go (default <repo>/.cache/models)

Nothing here skips: a missing binary or shared folder makes the tests that need it FAIL with a
message saying what is missing.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Mapping, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "golden"))

import ort_reference as R  # noqa: E402
from ort_reference import describe_proc as describe  # noqa: E402


class Lowbit:
    """Runs the CLI binary; `lowbit("run", model, ...)` returns the CompletedProcess."""

    def __init__(self, binary: Path):
        self.binary = binary

    def __call__(self, *args, env: Optional[Mapping[str, str]] = None,
                 timeout: float = 900) -> subprocess.CompletedProcess:
        return R.run_lowbit(args, env=env, timeout=timeout, binary=self.binary)

    def ok(self, *args, **kw) -> subprocess.CompletedProcess:
        """Run and fail the test with the command, exit code and stderr unless it exits 0."""
        proc = self(*args, **kw)
        if proc.returncode != 0:
            pytest.fail(describe(proc), pytrace=False)
        return proc

    def run_json(self, model, data: str, tmp: Path, *extra) -> dict:
        """`lowbit run MODEL --data DATA --json tmp/run.json --quiet EXTRA...` -> parsed JSON."""
        out = tmp / "run.json"
        self.ok("run", model, "--data", data, "--json", out, "--quiet", *extra)
        assert out.is_file(), f"--json {out} was not written"
        return json.loads(out.read_text())


@pytest.fixture(scope="session")
def shared() -> Path:
    d = R.shared_dir()
    if not (d / "models").is_dir():
        pytest.fail(f"shared test data not found at {d} (set LOWBIT_SHARED)", pytrace=False)
    return d


@pytest.fixture(scope="session")
def lowbit() -> Lowbit:
    b = R.lowbit_bin()
    if not (b.is_file() and os.access(b, os.X_OK)):
        pytest.fail(f"lowbit binary not found at {b}: run `swift build -c release` first "
                    f"or set LOWBIT_BIN", pytrace=False)
    return Lowbit(b)


@pytest.fixture(scope="session")
def models(shared) -> Dict[str, Path]:
    """All 8 test models by short name; the torchvision ones filled (seed 0) into the cache."""
    return {name: R.model_path(name, seed=0) for name in R.ALL_MODELS}


@pytest.fixture(scope="session")
def fashion_mnist_test(shared):
    """(x float32 [10000,1,28,28] normalized, labels int64)."""
    if not R.FASHION_MNIST_DIR.is_dir():
        pytest.fail(f"Fashion-MNIST not found at {R.FASHION_MNIST_DIR} "
                    f"(Debian package dataset-fashion-mnist)", pytrace=False)
    return R.load_fashion_mnist_test()
