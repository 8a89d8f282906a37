"""`lowbit train`: a short fresh run writes a model ONNX Runtime runs, a run resumed from its
epoch-1 checkpoint ends byte-identical to the uninterrupted run, and bad input fails cleanly
(exit 1, an `error:` line naming the problem, no output files left behind).

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
from ort_reference import CRASH_MARKERS, describe_proc as describe

MODEL = R.REPO_ROOT / "assets" / "models" / "fm_resnet20.onnx"


def _bn_stats(path):
    m = onnx.load(str(path))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    bns = [n for n in m.graph.node if n.op_type == "BatchNormalization"]
    return bns, {n.input[3]: inits[n.input[3]] for n in bns if n.input[3] in inits}


def test_fresh_run_writes_a_model_onnx_runtime_runs(lowbit, fashion_mnist_test, tmp_path):
    out, js = tmp_path / "trained.onnx", tmp_path / "train.json"
    proc = lowbit.ok("train", MODEL, "--train", "fashion-mnist:train:512", "--eval", "fashion-mnist:test:256",
                     "--epochs", "1", "--batch-size", "64", "-o", out, "--json", js, timeout=300)
    assert re.search(r"epoch 1/1 .*loss .*train top-1 .*eval top-1 .*samples/s", proc.stdout), describe(proc)
    assert "samples/s" in proc.stdout and "wrote" in proc.stdout, proc.stdout
    report = json.loads(js.read_text())
    assert report["config"]["epochs"] == 1 and report["config"]["batch_size"] == 64, report["config"]
    assert report["config"]["optimizer"] == "sgd" and report["config"]["schedule"] == "cosine"
    [epoch] = report["epochs"]
    for key in ("loss", "train_top1", "eval_top1", "eval_loss", "seconds", "samples_per_second", "learning_rate"):
        assert isinstance(epoch[key], (int, float)), (key, epoch)
    assert np.isfinite(epoch["loss"]) and epoch["samples_per_second"] > 0, epoch
    assert report["final"] == epoch

    onnx.checker.check_model(str(out))
    bns, stats = _bn_stats(out)
    assert len(bns) == 21, "BatchNormalization nodes must stay in the trained model"
    _, before = _bn_stats(MODEL)
    assert any(not np.array_equal(stats[k], before[k]) for k in stats), "running statistics did not move"

    # ONNX Runtime agrees with the eval top-1 lowbit reported (same 256 test images).
    x, labels = fashion_mnist_test
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name: x[:256]})[0]
    assert logits.shape == (256, 10) and np.isfinite(logits).all()
    top1 = 100.0 * float((logits.argmax(1) == labels[:256]).mean())
    assert abs(top1 - epoch["eval_top1"]) <= 100.0 / 256 + 1e-9, (top1, epoch["eval_top1"])
    assert top1 > 70, f"the trained model is broken: top-1 {top1}"
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_resume_after_epoch_1_of_2_is_byte_identical(lowbit, tmp_path):
    common = ["--train", "fashion-mnist:train:256", "--epochs", "2", "--batch-size", "64", "--seed", "3",
              "--quiet"]
    straight, resumed, ck = tmp_path / "straight.onnx", tmp_path / "resumed.onnx", tmp_path / "ckpt"
    lowbit.ok("train", MODEL, *common, "--checkpoint-dir", ck, "-o", straight, timeout=300)
    assert sorted(p.name for p in ck.iterdir()) == ["epoch-0001.ckpt", "epoch-0002.ckpt"]
    assert ck.joinpath("epoch-0001.ckpt").read_bytes()[:8] == b"LOWBITCK"
    # Training options left out on resume come from the checkpoint.
    js = tmp_path / "resumed.json"
    lowbit.ok("train", MODEL, "--train", "fashion-mnist:train:256", "--resume", ck / "epoch-0001.ckpt",
              "-o", resumed, "--json", js, "--quiet", timeout=300)
    assert resumed.read_bytes() == straight.read_bytes(), "the resumed run differs from the uninterrupted one"
    report = json.loads(js.read_text())
    assert [e["epoch"] for e in report["epochs"]] == [1, 2] and report["config"]["seed"] == 3, report
    assert report["resumed_from"].endswith("epoch-0001.ckpt")


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def _images(tmp, n=8, seed=0):
    np.save(tmp / "x.npy", np.random.default_rng(seed).standard_normal((n, 1, 28, 28)).astype(np.float32))
    return tmp / "x.npy"


def _spatial_logits_model(tmp):
    """Conv only: output [N, 4, 28, 28], not [N, classes] logits."""
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.full((4, 1, 3, 3), 0.1, np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, str(tmp / "conv.onnx"))
    return tmp / "conv.onnx"


def _ckpt(tmp, text=b"LOWBITCK" + b"\x01\x00\x00\x00" + b"\x00" * 40):
    (tmp / "run.ckpt").write_bytes(text)
    return tmp / "run.ckpt"


TRAIN = "fashion-mnist:train:64"

# Each case: (tmp input folder) -> (model or None for fm_resnet20, extra args, [stderr regexes]).
CASES = {
    "epochs-0": lambda t: (None, ["--train", TRAIN, "--epochs", "0"], [r"epochs", r"positive"]),
    "epochs-missing": lambda t: (None, ["--train", TRAIN], [r"--epochs"]),
    "lr-0": lambda t: (None, ["--train", TRAIN, "--epochs", "1", "--lr", "0"], [r"learning rate"]),
    "lr-negative": lambda t: (None, ["--train", TRAIN, "--epochs", "1", "--lr=-0.5"], [r"learning rate"]),
    "batch-size-0": lambda t: (None, ["--train", TRAIN, "--epochs", "1", "--batch-size", "0"], [r"batch size"]),
    "warmup-too-long": lambda t: (None, ["--train", TRAIN, "--epochs", "2", "--warmup-epochs", "2"], [r"warm-up"]),
    "train-file-missing": lambda t: (None, ["--train", f"npy:{t / 'nope.npy'}", "--epochs", "1"], [r"nope\.npy"]),
    "train-unknown-scheme": lambda t: (None, ["--train", "bogus:x", "--epochs", "1"], [r"scheme"]),
    "train-without-labels": lambda t: (None, ["--train", f"npy:{_images(t)}", "--epochs", "1"], [r"no labels"]),
    "eval-without-labels": lambda t: (None, ["--train", TRAIN, "--eval", f"npy:{_images(t)}", "--epochs", "1"],
                                      [r"no labels"]),
    "not-logits": lambda t: (_spatial_logits_model(t), ["--train", TRAIN, "--epochs", "1"], [r"\[N, classes\]"]),
    "resume-missing": lambda t: (None, ["--train", TRAIN, "--resume", t / "none.ckpt"], [r"none\.ckpt"]),
    "resume-damaged": lambda t: (None, ["--train", TRAIN, "--resume", _ckpt(t)], [r"checkpoint"]),
}


def assert_clean_failure(proc, patterns):
    msg = describe(proc)
    assert proc.returncode == 1, f"expected exit status 1: {msg}"
    for marker in CRASH_MARKERS:
        assert marker not in proc.stderr and marker not in proc.stdout, f"crash marker {marker!r}: {msg}"
    assert proc.stderr.startswith("error:") or "\nerror:" in proc.stderr, f"no 'error:' line: {msg}"
    for pat in patterns:
        assert re.search(pat, proc.stderr, re.IGNORECASE), f"stderr lacks /{pat}/i: {msg}"


@pytest.mark.parametrize("case", list(CASES))
def test_train_rejects_bad_input(case, lowbit, tmp_path):
    inputs, outdir = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outdir.mkdir()
    model, args, patterns = CASES[case](inputs)
    out, js = outdir / "t.onnx", outdir / "t.json"
    proc = lowbit("train", model or MODEL, *args, "-o", out, "--json", js, "--checkpoint-dir", outdir / "ck",
                  "--quiet", timeout=120)
    assert_clean_failure(proc, patterns)
    assert not out.exists() and not js.exists(), describe(proc)
    left = [p.name for p in outdir.rglob("*") if p.is_file()]
    assert left == [], f"files left behind: {left}: {describe(proc)}"


def test_resume_with_a_conflicting_option_is_refused(lowbit, tmp_path):
    ck = tmp_path / "ck"
    lowbit.ok("train", MODEL, "--train", "fashion-mnist:train:64", "--epochs", "2", "--batch-size", "64",
              "--checkpoint-dir", ck, "-o", tmp_path / "a.onnx", "--quiet", timeout=120)
    out = tmp_path / "b.onnx"
    proc = lowbit("train", MODEL, "--train", "fashion-mnist:train:64", "--resume", ck / "epoch-0001.ckpt",
                  "--lr", "0.5", "-o", out, "--quiet", timeout=120)
    assert_clean_failure(proc, [r"--lr", r"checkpoint"])
    assert not out.exists()
    proc = lowbit("train", MODEL, "--train", "fashion-mnist:train:32", "--resume", ck / "epoch-0001.ckpt",
                  "-o", out, "--quiet", timeout=120)
    assert_clean_failure(proc, [r"64", r"32|samples"])
    assert not out.exists()
