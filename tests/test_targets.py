"""`lowbit ptq --target`: files written for a runtime follow its rules, run in ONNX Runtime as
lowbit simulates them, and settings the runtime cannot run are refused before any work.

The TensorRT rules are checked by tests/trt_rules.py (TensorRT's documented QDQ rules; no
TensorRT on this machine); the same checker finds the default (ONNX Runtime) file's uint8 zero
points and int32 biases, so it can fail.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import ort_reference as R
import trt_rules

FAST = ("--effort", "fast", "--quiet")


def _ptq(lowbit, model, out, *extra):
    lowbit.ok("ptq", model, "--calib", "fashion-mnist:train:256", "-o", out, *FAST, *extra)
    return onnx.load(str(out))


@pytest.mark.parametrize("name", ["fm_resnet20", "fm_mobilenetv2", "fm_inception"])
def test_tensorrt_files_follow_its_rules_and_run_as_simulated(name, models, lowbit, tmp_path):
    trt = _ptq(lowbit, models[name], tmp_path / "trt.onnx", "--target", "tensorrt")
    assert trt_rules.violations(trt) == []
    # The default target's file breaks R1 (uint8 activations) and R5 (int32 biases).
    ort_file = _ptq(lowbit, models[name], tmp_path / "ort.onnx")
    rules = {v.split(":")[0] for v in trt_rules.violations(ort_file)}
    assert {"R1", "R5"} <= rules, rules

    x, labels = R.load_fashion_mnist("test", limit=2000)
    np.save(tmp_path / "x.npy", x)
    saved = tmp_path / "lowbit.npz"
    lowbit.ok("run", tmp_path / "trt.onnx", "--data", f"npy:{tmp_path / 'x.npy'}", "--save-outputs", saved, "--quiet")
    ours = next(iter(R.load_saved_outputs(saved).values()))
    theirs = next(iter(R.run_ort(tmp_path / "trt.onnx", {"input": x}, batch_size=500).values()))
    agree = R.argmax_agreement(ours, theirs)
    assert agree >= 0.995, f"{name}: ORT vs lowbit's simulation of the TensorRT file agree on {agree:.4f}"
    fp = next(iter(R.run_ort(models[name], {"input": x}, batch_size=500).values()))
    drop = float((fp.argmax(1) == labels).mean() - (theirs.argmax(1) == labels).mean())
    assert drop < 0.01, f"{name}: symmetric W8A8 for TensorRT loses {drop:.4f} top-1 on 2,000 test images"


def test_a_config_file_target_gives_the_same_file(models, lowbit, tmp_path):
    (tmp_path / "q.json").write_text(json.dumps({"target": "tensorrt"}))
    _ptq(lowbit, models["fm_resnet20"], tmp_path / "a.onnx", "--target", "tensorrt")
    _ptq(lowbit, models["fm_resnet20"], tmp_path / "b.onnx", "--config", tmp_path / "q.json")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


@pytest.mark.parametrize("target, extra, config, phrase", [
    ("tensorrt", ["--w-bits", "4"], None, "8-bit weights"),
    ("tensorrt", ["--a-bits", "4"], None, "INT8 activations only"),
    ("tensorrt", [], {"activation_symmetric": False}, "zero point 0"),
    ("tensorrt", [], {"integer_biases": True}, "biases stay float"),
    ("tensorrt", ["--per-channel-activations"], None, "one scale per tensor"),
    ("qnn", ["--a-bits", "4"], None, "8- or 16-bit activations"),
    ("qnn", ["--symmetric-activations"], None, "unsigned activations"),
    ("qnn", ["--group-size", "16", "--w-bits", "4"], None, "LPBQ"),
    ("openvino", ["--a-bits", "6"], None, "8-bit activations"),
])
def test_settings_a_target_cannot_run_are_refused(target, extra, config, phrase, models, lowbit, tmp_path):
    args = ["ptq", models["fm_resnet20"], "--calib", "fashion-mnist:train:64", "-o", tmp_path / "q.onnx",
            "--target", target, "--quiet", *extra]
    if config is not None:
        (tmp_path / "c.json").write_text(json.dumps(config))
        args += ["--config", tmp_path / "c.json"]
    proc = lowbit(*args)
    assert proc.returncode == 1, R.describe_proc(proc)
    assert f"target {target} cannot run these settings" in proc.stderr and phrase in proc.stderr, proc.stderr
    assert not (tmp_path / "q.onnx").exists()
