"""`lowbit ptq` on layer kinds the fm_* models lack.

- An encoder-decoder (U-Net-like) model: strided Convs down, a ConvTranspose and a linear Resize
  up, a skip Concat, an image-shaped output. Every layer's weight is quantized (the
  ConvTranspose's per output channel on axis 1); the written file runs in ONNX Runtime, agrees
  with lowbit's own simulation within one output step and stays close to the float model (SQNR).
- 1-D convolutions: a Conv1d network and the same network written with 2-D convolutions of
  height 1 get the same pipeline (equalization, AdaRound, bias correction) and the same integers.
- A recurrent classifier (LSTM over the rows of an image, then a Gemm): the LSTM keeps float
  weights and says so, everything around it is quantized, and the file runs in ORT within one
  output step of lowbit.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ort_reference as R

STEP_TOL = 1.0 + 1e-4
MIN_SQNR_DB = 30.0


def _decoder_model(path):
    rng = np.random.default_rng(0)

    def f(name, a):
        return numpy_helper.from_array(np.asarray(a, np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="down1", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="down2", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("ConvTranspose", ["r2", "wt", "bt"], ["u1"], name="up1", strides=[2, 2]),
        helper.make_node("Relu", ["u1"], ["ru"], name="relu3"),
        helper.make_node("Concat", ["ru", "r1"], ["cat"], name="skip", axis=1),
        helper.make_node("Resize", ["cat", "", "scales"], ["up"], name="up2", mode="linear"),
        helper.make_node("Conv", ["up", "w3", "b3"], ["y"], name="head", pads=[1, 1, 1, 1]),
    ]
    inits = [
        f("w1", rng.standard_normal((8, 1, 3, 3)) * 0.3), f("b1", rng.standard_normal(8) * 0.1),
        f("w2", rng.standard_normal((16, 8, 3, 3)) * 0.1), f("b2", rng.standard_normal(16) * 0.1),
        f("wt", rng.standard_normal((16, 8, 2, 2)) * 0.2), f("bt", rng.standard_normal(8) * 0.1),
        f("scales", [1, 1, 2, 2]),
        f("w3", rng.standard_normal((1, 16, 3, 3)) * 0.1), f("b3", [0.0]),
    ]
    graph = helper.make_graph(
        nodes, "decoder", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, 28, 28])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def _weight_axis(model, layer):
    """The axis attribute of the DequantizeLinear that writes node `layer`'s weight input."""
    weight = next(n.input[1] for n in model.graph.node if n.name == layer)
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.output[0] == weight:
            return next((a.i for a in node.attribute if a.name == "axis"), None), True
    return None, False


@pytest.mark.parametrize("per_channel", [False, True])
def test_decoder_ptq_runs_and_agrees(per_channel, lowbit, tmp_path, fashion_mnist_test):
    src = tmp_path / "decoder.onnx"
    _decoder_model(src)
    out = tmp_path / "decoder.q.onnx"
    report_path = tmp_path / "ptq.json"
    args = ["ptq", src, "--calib", "fashion-mnist:train", "--calib-size", "256", "-o", out,
            "--json", report_path, "--quiet"] + (["--per-channel"] if per_channel else [])
    lowbit.ok(*args)
    report = json.loads(report_path.read_text())
    weights = {q["name"] for q in report["quantizers"] if q["kind"] == "weight"}
    assert weights == {"w1", "w2", "wt", "w3"}, f"weight quantizers {sorted(weights)}"
    adaround = next(s for s in report["steps"] if s["step"] == "adaround")
    assert "round-to-nearest for 1 ConvTranspose" in adaround["detail"], adaround["detail"]

    model = onnx.load(out)
    axis, found = _weight_axis(model, "up1")
    assert found, "no DequantizeLinear writes the ConvTranspose weight"
    if per_channel:
        assert axis == 1, f"ConvTranspose weight dequantized on axis {axis}, expected 1 (output channels)"

    x = fashion_mnist_test[0][:128]
    float_y = R.run_ort(src, {"x": x})["y"]
    ort_y = R.run_ort(out, {"x": x})["y"]
    np.save(tmp_path / "x.npy", x)
    saved = tmp_path / "lowbit.npz"
    lowbit.ok("run", out, "--data", f"npy:{tmp_path / 'x.npy'}", "--save-outputs", saved, "--quiet")
    lowbit_y = next(iter(R.load_saved_outputs(saved).values()))
    scale = R.qdq_output_quantizer(out, "y")["scale"]
    steps = R.step_error(ort_y, lowbit_y, scale)
    assert steps <= STEP_TOL, f"ORT vs lowbit: {steps:.3f} output steps"
    sqnr = 10 * np.log10(np.mean(float_y.astype(np.float64) ** 2) / np.mean((ort_y.astype(np.float64) - float_y) ** 2))
    print(f"decoder {'PC' if per_channel else 'PT'} W8A8: SQNR {sqnr:.1f} dB, ORT vs lowbit {steps:.3f} steps")
    assert sqnr >= MIN_SQNR_DB, f"SQNR {sqnr:.1f} dB < {MIN_SQNR_DB}"


def _conv_net(path, two_d):
    """Conv1d(4->8, k5, s2, p2) ReLU Conv1d(8->8, k3, p1) ReLU GlobalAveragePool Gemm(10), or the
    same weights as 2-D convolutions over a height-1 image."""
    rng = np.random.default_rng(5)
    w1, b1 = rng.standard_normal((8, 4, 5)) * 0.3, rng.standard_normal(8) * 0.1
    w2, b2 = rng.standard_normal((8, 8, 3)) * 0.2, rng.standard_normal(8) * 0.1
    w3 = rng.standard_normal((10, 8)) * 0.3
    lift = (lambda w: w[:, :, None, :]) if two_d else (lambda w: w)
    k = (lambda v: [1] + v) if two_d else (lambda v: v)
    pads = (lambda a, b: [0, a, 0, b]) if two_d else (lambda a, b: [a, b])

    def f(name, a):
        return numpy_helper.from_array(np.asarray(a, np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=pads(2, 2), strides=k([2]), kernel_shape=k([5])),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=pads(1, 1), kernel_shape=k([3])),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "w3", "b3"], ["y"], name="fc", transB=1),
    ]
    inits = [f("w1", lift(w1)), f("b1", b1), f("w2", lift(w2)), f("b2", b2), f("w3", w3), f("b3", np.zeros(10))]
    shape = ["N", 4, 1, 32] if two_d else ["N", 4, 32]
    graph = helper.make_graph(nodes, "convnet", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


def _integers(model_path):
    """Every integer initializer of a QDQ file, by name, flattened."""
    m = onnx.load(model_path)
    return {t.name: numpy_helper.to_array(t).reshape(-1) for t in m.graph.initializer
            if t.data_type in (TensorProto.INT8, TensorProto.UINT8, TensorProto.INT32)}


def test_conv1d_gets_the_pipeline_of_its_2d_twin(lowbit, tmp_path):
    x = np.random.default_rng(6).standard_normal((256, 4, 32)).astype(np.float32)
    reports, files = {}, {}
    for two_d in (False, True):
        tag = "2d" if two_d else "1d"
        src, out, rep = tmp_path / f"{tag}.onnx", tmp_path / f"{tag}.q.onnx", tmp_path / f"{tag}.json"
        _conv_net(src, two_d)
        data = tmp_path / f"x{tag}.npy"
        np.save(data, x[:, :, None, :] if two_d else x)
        lowbit.ok("ptq", src, "--calib", f"npy:{data}", "-o", out, "--per-channel", "--w-bits", "4", "--json", rep, "--quiet")
        reports[tag], files[tag] = json.loads(rep.read_text()), out
    one, two = reports["1d"], reports["2d"]
    assert [l["layer"] for l in one["layers"]] == ["conv1", "conv2", "fc"], one["layers"]
    for a, b in zip(one["layers"], two["layers"]):
        assert a["nearest_error"] == pytest.approx(b["nearest_error"], rel=1e-3), (a, b)
        assert a["adaround_error"] == pytest.approx(b["adaround_error"], rel=1e-3), (a, b)
    assert one["equalized_pairs"] == two["equalized_pairs"] == 1
    ints1, ints2 = _integers(files["1d"]), _integers(files["2d"])
    assert sorted(ints1) == sorted(ints2)
    differing = {k: int((ints1[k] != ints2[k]).sum()) for k in ints1 if ints1[k].shape != ints2[k].shape or (ints1[k] != ints2[k]).any()}
    assert not differing, f"integers differ between the Conv1d file and its 2-D twin: {differing}"


def test_lstm_keeps_float_weights_and_runs(lowbit, tmp_path):
    rng = np.random.default_rng(9)
    hidden = 16

    def f(name, a):
        return numpy_helper.from_array(np.asarray(a, np.float32), name)

    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], name="time_major", perm=[1, 0, 2]),
        helper.make_node("LSTM", ["t", "W", "R", "B"], ["", "h"], name="lstm", hidden_size=hidden),
        helper.make_node("Squeeze", ["h", "axis0"], ["hs"], name="squeeze"),
        helper.make_node("Gemm", ["hs", "w", "b"], ["y"], name="fc", transB=1),
    ]
    inits = [f("W", rng.standard_normal((1, 4 * hidden, 28)) * 0.3), f("R", rng.standard_normal((1, 4 * hidden, hidden)) * 0.3),
             f("B", rng.standard_normal((1, 8 * hidden)) * 0.1), numpy_helper.from_array(np.array([0], np.int64), "axis0"),
             f("w", rng.standard_normal((10, hidden))), f("b", np.zeros(10))]
    graph = helper.make_graph(nodes, "lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 28, 28])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    src, out, rep = tmp_path / "lstm.onnx", tmp_path / "lstm.q.onnx", tmp_path / "lstm.json"
    onnx.save(model, src)
    x = rng.standard_normal((256, 28, 28)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    lowbit.ok("ptq", src, "--calib", f"npy:{tmp_path / 'x.npy'}", "-o", out, "--json", rep, "--quiet")
    report = json.loads(rep.read_text())
    place = next(s for s in report["steps"] if s["step"] == "place quantizers")
    assert place["detail"] == "float weights (recurrent, Einsum) in 1 layer: LSTM 'lstm'", place["detail"]
    assert {q["name"] for q in report["quantizers"] if q["kind"] == "weight"} == {"w"}
    written = onnx.load(out)
    floats = {t.name for t in written.graph.initializer if t.data_type == TensorProto.FLOAT}
    assert {"W", "R"} <= floats, "the LSTM weights should stay float"
    ort_y = R.run_ort(out, {"x": x[:64]})["y"]
    saved = tmp_path / "lowbit.npz"
    np.save(tmp_path / "x64.npy", x[:64])
    lowbit.ok("run", out, "--data", f"npy:{tmp_path / 'x64.npy'}", "--save-outputs", saved, "--quiet")
    lowbit_y = next(iter(R.load_saved_outputs(saved).values()))
    steps = R.step_error(ort_y, lowbit_y, R.qdq_output_quantizer(out, "y")["scale"])
    assert steps <= STEP_TOL, f"ORT vs lowbit: {steps:.3f} output steps"
    float_y = R.run_ort(src, {"x": x[:64]})["y"]
    assert R.argmax_agreement(ort_y, float_y) >= 0.95


def test_block_reconstruction_learns_the_conv_transpose_rounding(lowbit, tmp_path):
    """ConvTranspose has a gradient rule, so block reconstruction takes its weight in."""
    src = tmp_path / "decoder.onnx"
    _decoder_model(src)
    out, rep = tmp_path / "q.onnx", tmp_path / "q.json"
    lowbit.ok("ptq", src, "--calib", "fashion-mnist:train", "--calib-size", "128", "-o", out, "--json", rep, "--quiet",
              "--w-bits", "4", "--adaround-unit", "block", "--adaround-iterations", "50")
    report = json.loads(rep.read_text())
    layers = [name for block in report["blocks"] for name in block["layers"]]
    assert sorted(layers) == ["down1", "down2", "head", "up1"], report["blocks"]
    nearest = sum(b["nearest_error"] for b in report["blocks"])
    kept = sum(b["nearest_error"] if b.get("kept_nearest") else b["adaround_error"] for b in report["blocks"])
    assert kept <= nearest
