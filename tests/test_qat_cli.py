"""`lowbit qat`: a short run writes a QDQ model that ONNX Runtime runs and that agrees with
lowbit's own simulation, BatchNorm kept unfolded is absorbed into per-channel scales, a run
resumed from its epoch-1 checkpoint ends byte-identical to the uninterrupted one, and bad input
fails cleanly (exit 1, an `error:` line naming the problem, no files left behind).

Kept small for 2 cores: fm_resnet20 on a few hundred Fashion-MNIST samples.
"""
from __future__ import annotations

import json
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import ort_reference as R
from ort_reference import describe_proc as describe
from test_train_cli import assert_clean_failure

MODEL = R.REPO_ROOT / "assets" / "models" / "fm_resnet20.onnx"
TRAIN = "fashion-mnist:train:256"


def _ort_top1(path, x, labels):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert logits.shape == (len(x), 10) and np.isfinite(logits).all()
    return 100.0 * float((logits.argmax(1) == labels).mean())


def _ops(path):
    m = onnx.load(str(path))
    return [n.op_type for n in m.graph.node], m


def test_w4a4_run_writes_a_qdq_model_that_matches_the_simulation(lowbit, fashion_mnist_test, tmp_path):
    out, js = tmp_path / "qat.onnx", tmp_path / "qat.json"
    proc = lowbit.ok("qat", MODEL, "--train", TRAIN, "--eval", "fashion-mnist:test:256", "--w-bits", "4",
                     "--a-bits", "4", "--epochs", "1", "--batch-size", "64", "--calib-size", "128",
                     "-o", out, "--json", js, timeout=600)
    assert re.search(r"epoch 0/1 .*eval top-1", proc.stdout), describe(proc)
    assert re.search(r"epoch 1/1 .*loss .*eval top-1 .*samples/s", proc.stdout), describe(proc)
    report = json.loads(js.read_text())
    assert report["quant"]["weight_bits"] == 4 and report["quant"]["activation_bits"] == 4
    assert report["batchnorm"] == "fold" and report["unfolded"] == [] and report["clipped_weights"] == 0
    assert report["config"]["learning_rate"] == pytest.approx(0.003) and report["config"]["optimizer"] == "sgd"
    # The default start is lowbit ptq's pipeline: AdaRound's weights are where training begins.
    steps = [s["step"] for s in report["ptq_steps"]]
    assert report["start"] == "ptq" and steps[0] == "fold batchnorm" and "adaround" in steps, report["ptq_steps"]
    # CLE at its default (absent: on for these per-tensor weights), and it ran.
    assert "cross_layer_equalization" not in report["quant"] and report["quant"]["adaround"]
    cle = next(s for s in report["ptq_steps"] if s["step"] == "cross-layer equalization")
    assert "pairs" in cle["detail"] and "skipped" not in cle["detail"], cle
    [epoch] = report["epochs"]
    assert np.isfinite(epoch["loss"]) and epoch["samples_per_second"] > 0
    assert report["start_top1"] > 50 and report["total_seconds"] > 0

    ops, m = _ops(out)
    onnx.checker.check_model(str(out))
    assert "BatchNormalization" not in ops and ops.count("QuantizeLinear") >= 30, ops
    assert not any(o.domain == "lowbit.train" for o in m.opset_import)
    stored = R.qdq_stored_types(out)
    assert sum(stored["weights"].values()) == 22 and set(stored["weights"]) <= {"INT4", "INT8"}, stored
    assert stored["biases"] == {"INT32": 22}, stored
    init = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear" and init.get(n.input[0]) is not None and init[n.input[0]].dtype == np.int8:
            w = init[n.input[0]]
            assert w.min() >= -8 and w.max() <= 7, f"{n.input[0]} is not on the 4-bit grid"

    # ONNX Runtime on the written file = lowbit's evaluation of the file = its QAT simulation.
    x, labels = fashion_mnist_test
    top1 = _ort_top1(out, x[:256], labels[:256])
    assert top1 == pytest.approx(report["evaluation"]["quantized_top1"], abs=100 / 256 + 1e-9), (top1, report["evaluation"])
    assert top1 == pytest.approx(epoch["eval_top1"], abs=100 / 256 + 1e-9), (top1, epoch)
    assert top1 > 70, f"the QAT model is broken: top-1 {top1}"


def test_per_channel_with_batchnorm_kept_and_reestimated(lowbit, fashion_mnist_test, tmp_path):
    out, js = tmp_path / "qat.onnx", tmp_path / "qat.json"
    lowbit.ok("qat", MODEL, "--train", TRAIN, "--eval", "fashion-mnist:test:256", "--w-bits", "4",
              "--per-channel", "--batchnorm", "keep", "--bn-reestimation", "2", "--epochs", "1",
              "--batch-size", "64", "--calib-size", "128", "-o", out, "--json", js, "--quiet", timeout=600)
    report = json.loads(js.read_text())
    assert report["batchnorm"] == "keep" and len(report["unfolded"]) == 21, report["unfolded"]
    assert report["bn_reestimated"] == 21
    ops, m = _ops(out)
    assert "BatchNormalization" not in ops, "BatchNorm must be absorbed into the weight scales"
    axes = [a.i for n in m.graph.node if n.op_type == "DequantizeLinear" for a in n.attribute if a.name == "axis"]
    assert len(axes) >= 22, "per-channel weight scales"
    x, labels = fashion_mnist_test
    top1 = _ort_top1(out, x[:256], labels[:256])
    assert top1 == pytest.approx(report["evaluation"]["quantized_top1"], abs=100 / 256 + 1e-9)
    assert top1 > 70, f"the QAT model is broken: top-1 {top1}"


def test_resume_after_epoch_1_of_2_is_byte_identical(lowbit, tmp_path):
    common = ["--train", "fashion-mnist:train:192", "--w-bits", "4", "--calib-size", "64", "--start", "range-setting",
              "--quiet"]
    straight, resumed, ck = tmp_path / "straight.onnx", tmp_path / "resumed.onnx", tmp_path / "ck"
    lowbit.ok("qat", MODEL, *common, "--epochs", "2", "--batch-size", "64", "--seed", "5",
              "--checkpoint-dir", ck, "-o", straight, timeout=600)
    assert sorted(p.name for p in ck.iterdir()) == ["epoch-0001.ckpt", "epoch-0002.ckpt"]
    js = tmp_path / "resumed.json"
    lowbit.ok("qat", MODEL, *common, "--resume", ck / "epoch-0001.ckpt", "-o", resumed, "--json", js, timeout=600)
    assert resumed.read_bytes() == straight.read_bytes(), "the resumed run differs from the uninterrupted one"
    report = json.loads(js.read_text())
    assert [e["epoch"] for e in report["epochs"]] == [1, 2] and report["config"]["seed"] == 5
    assert report["start"] == "range-setting" and "adaround" not in [s["step"] for s in report["ptq_steps"]]

    # The checkpoint holds the quantization settings: other ones, or the other command, are refused.
    out = tmp_path / "other.onnx"
    proc = lowbit("qat", MODEL, "--train", "fashion-mnist:train:192", "--w-bits", "8", "--calib-size", "64",
                  "--start", "range-setting", "--resume", ck / "epoch-0001.ckpt", "-o", out, "--quiet", timeout=300)
    assert_clean_failure(proc, [r"w_bits", r"resume"])
    proc = lowbit("qat", MODEL, "--train", "fashion-mnist:train:192", "--w-bits", "4", "--calib-size", "64",
                  "--resume", ck / "epoch-0001.ckpt", "-o", out, "--quiet", timeout=300)
    assert_clean_failure(proc, [r"start range-setting", r"resume"])
    proc = lowbit("train", MODEL, "--train", "fashion-mnist:train:192", "--resume", ck / "epoch-0001.ckpt",
                  "-o", out, "--quiet", timeout=300)
    assert_clean_failure(proc, [r"qat"])
    assert not out.exists()


def _train_checkpoint(lowbit, tmp):
    ck = tmp / "plain"
    lowbit.ok("train", MODEL, "--train", "fashion-mnist:train:64", "--epochs", "1", "--batch-size", "64",
              "--checkpoint-dir", ck, "-o", tmp / "plain.onnx", "--quiet", timeout=300)
    return ck / "epoch-0001.ckpt"


SMALL = "fashion-mnist:train:64"
CASES = {
    "w-bits-1": lambda t, lb: (["--train", SMALL, "--epochs", "1", "--w-bits", "1"], [r"w-bits", r"2 to 16"]),
    "a-bits-17": lambda t, lb: (["--train", SMALL, "--epochs", "1", "--a-bits", "17"], [r"a-bits", r"2 to 16"]),
    "keep-per-tensor": lambda t, lb: (["--train", SMALL, "--epochs", "1", "--batchnorm", "keep"], [r"per-channel"]),
    "reestimate-folded": lambda t, lb: (["--train", SMALL, "--epochs", "1", "--bn-reestimation", "2"],
                                        [r"batchnorm keep"]),
    "epochs-missing": lambda t, lb: (["--train", SMALL], [r"--epochs"]),
    "calib-size-0": lambda t, lb: (["--train", SMALL, "--epochs", "1", "--calib-size", "0"], [r"calib-size"]),
    "train-missing": lambda t, lb: (["--train", f"npy:{t / 'nope.npy'}", "--epochs", "1"], [r"nope\.npy"]),
    "train-checkpoint": lambda t, lb: (["--train", SMALL, "--resume", _train_checkpoint(lb, t)], [r"command|qat"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_qat_rejects_bad_input(case, lowbit, tmp_path):
    inputs, outdir = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outdir.mkdir()
    args, patterns = CASES[case](inputs, lowbit)
    out, js = outdir / "q.onnx", outdir / "q.json"
    proc = lowbit("qat", MODEL, *args, "-o", out, "--json", js, "--checkpoint-dir", outdir / "ck", "--quiet",
                  timeout=300)
    assert_clean_failure(proc, patterns)
    left = [p.name for p in outdir.rglob("*") if p.is_file()]
    assert left == [], f"files left behind: {left}: {describe(proc)}"
