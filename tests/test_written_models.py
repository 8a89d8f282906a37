"""Graphs lowbit writes back are valid ONNX that ONNX Runtime runs with the same outputs.

`lowbit simplify` loads a model, folds constants and shape subgraphs, removes Identity and dead
nodes and writes the graph back: onnx.checker must accept the file and ONNX Runtime must give
the original model's outputs (1e-6 relative; 1e-5 with BatchNorm folded, which reorders float
arithmetic), on every model in ../shared/models.
"""
from __future__ import annotations

import subprocess

import numpy as np
import onnx
import pytest

import ort_reference as R


@pytest.mark.parametrize("name", R.ALL_MODELS)
@pytest.mark.parametrize("fold", [False, True])
def test_simplified_model_is_valid_and_equivalent(name, fold, tmp_path):
    path = R.model_path(name)
    feeds = R.minilm_eval_feeds(4) if name == R.MINILM else R.random_feeds(path, batch=1)
    out = tmp_path / "simple.onnx"
    cmd = [str(R.lowbit_bin()), "simplify", str(path), "-o", str(out), "--quiet"]
    if fold:
        cmd.append("--fold-batchnorm")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    original = R.ort_session(str(path)).run(None, feeds)
    written = R.ort_session(str(out)).run(None, feeds)
    tolerance = 1e-5 if fold else 1e-6
    for a, b in zip(written, original):
        assert a.shape == b.shape
        rel = R.max_rel_error(a, b)
        assert rel <= tolerance, f"{name}: max relative error {rel:.3g} > {tolerance}"
