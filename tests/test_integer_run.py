"""`lowbit run --integer`: a QDQ file run as an integer accelerator runs it (int32 accumulators,
fixed-point requantization per channel) agrees with ONNX Runtime's integer execution of the same
file (QLinearConv / QLinearMatMul after its QDQ fusions) within one step of the output quantizer
(99.9% of the logits; a rounding tie broken the other way deep in the network can add one more
step to a few: lowbit's float simulation of the W4 MobileNetV2 file, not only its integer run, is
2 steps from ONNX Runtime 1.32 on 1 logit of 20,000), and the layers it reports as requantized are the quantized Conv/Gemm/MatMul layers a Q follows.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import ort_reference as R

CASES = [
    ("fm_resnet20", []), ("fm_resnet20", ["--per-channel"]), ("fm_mobilenetv2", []),
    ("fm_mobilenetv2", ["--per-channel", "--w-bits", "4"]), ("fm_inception", ["--per-channel"]),
]


def _requantizable(path) -> int:
    """Quantized Conv/Gemm/MatMul layers (input per tensor and weight from DequantizeLinear) whose output,
    through at most one Relu/Clip, only a per-tensor QuantizeLinear reads."""
    g = onnx.load(str(path)).graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    readers = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    count = 0
    for n in g.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        if not all(v in producer and producer[v].op_type == "DequantizeLinear" for v in n.input[:2]):
            continue
        x_scale = inits.get(producer[n.input[0]].input[1])
        if x_scale is None or np.prod(x_scale.dims, dtype=int) != 1:
            continue  # an input per channel (an image's colours): dequantized, run in float
        v = n.output[0]
        r = readers.get(v, [])
        if len(r) == 1 and r[0].op_type in ("Relu", "Clip") and n.op_type != "MatMul":
            v = r[0].output[0]
            r = readers.get(v, [])
        if len(r) == 1 and r[0].op_type == "QuantizeLinear":
            scale = inits.get(r[0].input[1])
            count += scale is not None and np.prod(scale.dims, dtype=int) == 1
    return count


@pytest.mark.parametrize("name, extra", CASES)
def test_integer_run_matches_onnx_runtime_within_one_step(name, extra, models, lowbit, tmp_path):
    out = tmp_path / "q.onnx"
    lowbit.ok("ptq", models[name], "--calib", "fashion-mnist:train:256", "-o", out, "--effort", "fast", "--quiet", *extra)
    x, _ = R.load_fashion_mnist("test", limit=2000)
    np.save(tmp_path / "x.npy", x)
    saved, js = tmp_path / "int.npy", tmp_path / "run.json"
    lowbit.ok("run", out, "--data", f"npy:{tmp_path / 'x.npy'}", "--integer", "--save-outputs", saved, "--json", js, "--quiet")
    report = json.loads(js.read_text())
    assert report["integer_layers"] == _requantizable(out) > 0, report
    ours = np.load(saved)
    theirs = next(iter(R.run_ort(out, {"input": x}, batch_size=500).values()))
    q = R.qdq_output_quantizer(out, "logits")
    assert q is not None and q["axis"] is None
    steps = np.abs(ours.astype(np.float64) - theirs) / float(q["scale"])
    within = float((steps <= 1.0 + 1e-3).mean())
    assert within >= 0.999 and steps.max() <= 2.0 + 1e-3, f"{name} {extra}: {within:.2%} within one step, up to {steps.max():.2f} steps from ONNX Runtime"
    assert (ours.argmax(1) == theirs.argmax(1)).mean() >= 0.995


def test_integer_run_on_an_imagenet_model(lowbit, tmp_path):
    """resnet18 (seeded weights, 224x224, random inputs): every per-tensor quantized Conv is
    requantized in integers. ONNX Runtime's int8 kernels on this CPU are themselves a few steps
    from lowbit's float simulation here (3 at most on these inputs), so the integer run is held to
    the simulation's own distance: 99% of the logits within one step, none further than the
    simulation's worst, the same top-1."""
    model = R.model_path("resnet18", seed=0)
    feeds = R.random_feeds(model, batch=32, seed=3)
    np.save(tmp_path / "calib.npy", feeds["input"][:16])
    x = feeds["input"][16:]
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "q.onnx"
    lowbit.ok("ptq", model, "--calib", f"npy:{tmp_path / 'calib.npy'}", "-o", out, "--effort", "fast", "--per-channel", "--quiet")
    name = onnx.load(str(out)).graph.output[0].name
    theirs = R.run_ort(out, {"input": x})[name]
    scale = float(R.qdq_output_quantizer(out, name)["scale"])
    steps = {}
    for mode in (["--integer"], []):
        saved = tmp_path / f"out{len(mode)}.npy"
        lowbit.ok("run", out, "--data", f"npy:{tmp_path / 'x.npy'}", "--save-outputs", saved, "--json", tmp_path / "run.json",
                  "--quiet", *mode)
        if mode:
            assert json.loads((tmp_path / "run.json").read_text())["integer_layers"] == _requantizable(out) >= 10
        ours = np.load(saved)
        steps[bool(mode)] = np.rint(np.abs(ours.astype(np.float64) - theirs) / scale)
        assert (ours.argmax(1) == theirs.argmax(1)).all()
    integer, simulated = steps[True], steps[False]
    assert (integer <= 1).mean() >= 0.99 and integer.max() <= max(simulated.max(), 1), (integer.max(), simulated.max())
