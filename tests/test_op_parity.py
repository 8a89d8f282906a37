"""FP32 parity of single-op graphs with ONNX Runtime: Resize / Upsample in every mode lowbit
runs, ConvTranspose, and the normalization ops, each built here with onnx.helper and run by
`lowbit run` and by ORT on the same seeded input. Per output: max|lowbit - ort| / max|ort| <= 1e-4.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ort_reference as R

REL_TOL = 1e-4
X_SHAPE = [2, 3, 5, 6]


def _model(tmp_path, name, nodes, inputs, output_rank, initializers=(), opset=13):
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * output_rank)],
        initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    return path


def _check(lowbit, tmp_path, path, x):
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npz"
    lowbit.run_json(path, f"npy:{tmp_path / 'x.npy'}", tmp_path, "--save-outputs", out,
                    "--batch-size", str(len(x)))
    got = next(iter(R.load_saved_outputs(out).values()))
    want = R.run_ort(path, {"x": x})["y"]
    assert got.shape == want.shape, f"shape {got.shape} != ORT {want.shape}"
    err = R.max_rel_error(got, want)
    assert err <= REL_TOL, f"max rel err {err:.3g}"


def _floats(name, values):
    return numpy_helper.from_array(np.asarray(values, np.float32), name)


def _ints(name, values):
    return numpy_helper.from_array(np.asarray(values, np.int64), name)


RESIZE_CASES = [
    # (mode, coordinate_transformation_mode, nearest_mode / cubic options, scales or sizes)
    ("nearest", "asymmetric", {"nearest_mode": "floor"}, ("scales", [1, 1, 2, 2])),  # torch nearest
    ("nearest", "half_pixel", {}, ("scales", [1, 1, 2, 3])),
    ("nearest", "half_pixel", {}, ("scales", [1, 1, 0.5, 0.5])),
    ("nearest", "pytorch_half_pixel", {"nearest_mode": "round_prefer_ceil"}, ("sizes", [2, 3, 7, 4])),
    ("nearest", "align_corners", {}, ("scales", [1, 1, 1.5, 0.7])),
    ("nearest", "tf_half_pixel_for_nn", {"nearest_mode": "ceil"}, ("scales", [1, 1, 1.7, 2])),
    ("linear", "half_pixel", {}, ("scales", [1, 1, 2, 2])),
    ("linear", "pytorch_half_pixel", {}, ("sizes", [2, 3, 11, 1])),
    ("linear", "align_corners", {}, ("scales", [1, 1, 2.5, 0.5])),
    ("linear", "asymmetric", {}, ("scales", [1, 1, 0.6, 1.5])),
    ("cubic", "half_pixel", {}, ("scales", [1, 1, 2, 2])),
    ("cubic", "align_corners", {"cubic_coeff_a": -0.5}, ("sizes", [2, 3, 9, 4])),
    ("cubic", "pytorch_half_pixel", {"exclude_outside": 1}, ("scales", [1, 1, 1.5, 0.5])),
]


@pytest.mark.parametrize("case", RESIZE_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[3][0]}")
def test_resize(case, lowbit, tmp_path):
    mode, coords, extra, (kind, values) = case
    inits = [_floats("roi", [])]
    if kind == "scales":
        inits.append(_floats("scales", values))
        inputs = ["x", "roi", "scales"]
    else:
        inits.append(_ints("sizes", values))
        inputs = ["x", "roi", "", "sizes"]
    node = helper.make_node("Resize", inputs, ["y"], mode=mode, coordinate_transformation_mode=coords, **extra)
    path = _model(tmp_path, "resize", [node], [("x", X_SHAPE)], 4, inits)
    x = np.random.default_rng(0).standard_normal(X_SHAPE).astype(np.float32)
    _check(lowbit, tmp_path, path, x)


def test_resize_opset18_axes_and_symmetric_half_pixel(lowbit, tmp_path):
    x = np.random.default_rng(1).standard_normal(X_SHAPE).astype(np.float32)
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear", axes=[2, 3])
    path = _model(tmp_path, "resize18", [node], [("x", X_SHAPE)], 4, [_ints("sizes", [8, 9])], opset=18)
    _check(lowbit, tmp_path, path, x)
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear",
                            coordinate_transformation_mode="half_pixel_symmetric")
    path = _model(tmp_path, "resize19", [node], [("x", X_SHAPE)], 4, [_floats("scales", [1, 1, 1.5, 0.7])], opset=19)
    _check(lowbit, tmp_path, path, x)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_opset10_and_upsample(mode, lowbit, tmp_path):
    x = np.random.default_rng(2).standard_normal(X_SHAPE).astype(np.float32)
    node = helper.make_node("Resize", ["x", "scales"], ["y"], mode=mode)
    path = _model(tmp_path, "resize10", [node], [("x", X_SHAPE)], 4, [_floats("scales", [1, 1, 2, 1.5])], opset=10)
    _check(lowbit, tmp_path, path, x)
    node = helper.make_node("Upsample", ["x", "scales"], ["y"], mode=mode)
    path = _model(tmp_path, "upsample9", [node], [("x", X_SHAPE)], 4, [_floats("scales", [1, 1, 2, 3])], opset=9)
    _check(lowbit, tmp_path, path, x)


@pytest.mark.parametrize("op,opset,groups", [
    ("InstanceNormalization", 13, 3), ("GroupNormalization", 21, 2), ("GroupNormalization", 21, 4),
])
def test_instance_and_group_normalization(op, opset, groups, lowbit, tmp_path):
    shape = [2, 4, 5, 6]
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 3 + 1.5).astype(np.float32)
    params = shape[1]
    inits = [_floats("scale", rng.uniform(0.5, 2, params)), _floats("B", rng.standard_normal(params))]
    attrs = {"epsilon": 1e-3} | ({} if op == "InstanceNormalization" else {"num_groups": groups})
    node = helper.make_node(op, ["x", "scale", "B"], ["y"], **attrs)
    path = _model(tmp_path, op, [node], [("x", shape)], 4, inits, opset=opset)
    _check(lowbit, tmp_path, path, x)


CONV_TRANSPOSE_CASES = [
    # (input shape, weight shape, attributes)
    ([2, 4, 5, 6], [4, 3, 3, 3], {}),
    ([2, 4, 5, 6], [4, 3, 3, 3], {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}),
    ([2, 4, 5, 6], [4, 3, 2, 2], {"strides": [2, 2]}),  # the U-Net upsampling
    ([2, 4, 5, 6], [4, 2, 3, 3], {"group": 2, "strides": [2, 1], "dilations": [1, 2], "pads": [0, 1, 2, 0]}),
    ([2, 4, 5, 6], [4, 1, 3, 3], {"group": 4, "strides": [2, 2], "output_shape": [10, 12]}),
    ([2, 4, 5, 6], [4, 3, 3, 3], {"strides": [2, 3], "auto_pad": "SAME_UPPER"}),
    ([2, 4, 5, 6], [4, 3, 4, 3], {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ([2, 4, 7], [4, 3, 5], {"strides": [3], "pads": [2, 1]}),  # 1-D
]


@pytest.mark.parametrize("case", CONV_TRANSPOSE_CASES, ids=lambda c: str(c[2] or "plain"))
@pytest.mark.parametrize("bias", [True, False])
def test_conv_transpose(case, bias, lowbit, tmp_path):
    xshape, wshape, attrs = case
    rng = np.random.default_rng(4)
    x = rng.standard_normal(xshape).astype(np.float32)
    inits = [_floats("w", rng.standard_normal(wshape) * 0.3)]
    inputs = ["x", "w"]
    if bias:
        inits.append(_floats("b", rng.standard_normal(wshape[1] * attrs.get("group", 1))))
        inputs.append("b")
    node = helper.make_node("ConvTranspose", inputs, ["y"], **attrs)
    path = _model(tmp_path, "convt", [node], [("x", xshape)], len(xshape), inits)
    _check(lowbit, tmp_path, path, x)


# (op, attributes, input shape, constant inputs after x, opset)
MORE_CASES = [
    ("Mish", {}, [2, 3, 5, 6], [], 18),
    ("Celu", {"alpha": 0.7}, [2, 3, 5, 6], [], 13),
    ("ThresholdedRelu", {"alpha": 0.3}, [2, 3, 5, 6], [], 13),
    ("DepthToSpace", {"blocksize": 2, "mode": "DCR"}, [2, 8, 3, 4], [], 13),
    ("DepthToSpace", {"blocksize": 2, "mode": "CRD"}, [2, 8, 3, 4], [], 13),
    ("SpaceToDepth", {"blocksize": 2}, [2, 3, 4, 6], [], 13),
    ("CumSum", {}, [2, 3, 5], [("axis", np.array(1, np.int64))], 14),
    ("CumSum", {"exclusive": 1, "reverse": 1}, [2, 3, 5], [("axis", np.array(-1, np.int64))], 14),
    ("LRN", {"size": 3, "alpha": 1e-2, "beta": 0.75, "bias": 2.0}, [2, 5, 4, 4], [], 13),
    ("LRN", {"size": 5}, [2, 6, 3, 3], [], 13),
    ("LpNormalization", {"axis": 1, "p": 2}, [2, 5, 3], [], 13),
    ("LpNormalization", {"axis": -1, "p": 1}, [2, 5, 3], [], 13),
    ("Einsum", {"equation": "bhid,bhjd->bhij"}, [2, 3, 4, 5], [("k", (2, 3, 6, 5))], 13),
    ("Einsum", {"equation": "...ij,jk"}, [2, 3, 4, 5], [("w", (5, 7))], 13),
    ("Einsum", {"equation": "bij->bji"}, [2, 4, 5], [], 13),
    ("Einsum", {"equation": "bii->bi"}, [2, 4, 4], [], 13),
    ("Einsum", {"equation": "nchw,c->nhw"}, [2, 3, 4, 5], [("v", (3,))], 13),
    ("Einsum", {"equation": "bhid,bjhd->bjhi"}, [2, 3, 4, 5], [("k", (2, 6, 3, 5))], 13),  # permuted output
    ("Einsum", {"equation": "ij,ij->i"}, [4, 5], [("u", (4, 5))], 13),
    ("Einsum", {"equation": "ij,kj->i"}, [4, 5], [("u", (3, 5))], 13),  # k summed from one operand: no product form
]


@pytest.mark.parametrize("case", MORE_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_more_ops(case, lowbit, tmp_path):
    op, attrs, shape, constants, opset = case
    rng = np.random.default_rng(7)
    inits, names = [], ["x"]
    for name, value in constants:
        if isinstance(value, tuple):
            value = rng.standard_normal(value).astype(np.float32)
        inits.append(numpy_helper.from_array(value, name))
        names.append(name)
    node = helper.make_node(op, names, ["y"], **attrs)
    probe = helper.make_model(helper.make_graph([node], "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits),
                              opset_imports=[helper.make_opsetid("", opset)])
    rank = len(onnx.shape_inference.infer_shapes(probe).graph.output[0].type.tensor_type.shape.dim)
    path = _model(tmp_path, op, [node], [("x", shape)], rank, inits, opset=opset)
    x = (rng.standard_normal(shape) * 2).astype(np.float32)
    _check(lowbit, tmp_path, path, x)


RECURRENT_CASES = [
    # (op, attributes, extra inputs beyond X W R: B, sequence_lens, initial_h[, initial_c, P])
    ("LSTM", {}, ["B"]),
    ("LSTM", {"direction": "bidirectional"}, ["B", "", "initial_h", "initial_c"]),
    ("LSTM", {"direction": "reverse", "clip": 1.5}, ["B", "sequence_lens"]),
    ("LSTM", {"layout": 1}, ["B"]),  # checked against the layout-0 twin: ORT runs only layout 0
    ("LSTM", {"input_forget": 1}, ["B", "", "", "", "P"]),
    ("GRU", {"linear_before_reset": 1}, ["B"]),  # PyTorch's form
    ("GRU", {"direction": "bidirectional"}, ["B", "sequence_lens", "initial_h"]),
    ("GRU", {"activations": ["HardSigmoid", "Relu"], "activation_alpha": [0.3], "activation_beta": [0.4]}, []),
    ("RNN", {}, ["B"]),
    ("RNN", {"direction": "bidirectional", "activations": ["Relu", "Tanh"]}, ["B", "", "initial_h"]),
]


@pytest.mark.parametrize("case", RECURRENT_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{'+'.join(filter(None, c[2]))}")
def test_recurrent(case, lowbit, tmp_path):
    op, attrs, extras = case
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    steps, batch, size, hidden = 5, 3, 4, 6
    dirs = 2 if attrs.get("direction") == "bidirectional" else 1
    layout = attrs.get("layout", 0)
    xshape = [steps, batch, size] if layout == 0 else [batch, steps, size]
    state = [dirs, batch, hidden] if layout == 0 else [batch, dirs, hidden]
    rng = np.random.default_rng(8)
    values = {
        "W": rng.standard_normal((dirs, gates * hidden, size)) * 0.5,
        "R": rng.standard_normal((dirs, gates * hidden, hidden)) * 0.5,
        "B": rng.standard_normal((dirs, 2 * gates * hidden)) * 0.3,
        "sequence_lens": np.array([5, 2, 4][:batch], np.int32),
        "initial_h": rng.standard_normal(state) * 0.5,
        "initial_c": rng.standard_normal(state) * 0.5,
        "P": rng.standard_normal((dirs, 3 * hidden)) * 0.3,
    }
    inputs = ["x", "W", "R"] + extras
    inits = [numpy_helper.from_array(values[n] if n == "sequence_lens" else values[n].astype(np.float32), n)
             for n in inputs[1:] if n]
    outputs = ["y", "y_h"] + (["y_c"] if op == "LSTM" else [])

    def save(attributes, shape, path):
        node = helper.make_node(op, inputs, outputs, hidden_size=hidden, **attributes)
        graph = helper.make_graph(
            [node], op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], initializer=inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
        model.ir_version = 8
        onnx.save(model, path)

    path = tmp_path / "rnn.onnx"
    save(attrs, xshape, path)
    x = rng.standard_normal(xshape).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npz"
    # The whole (time- or batch-major) tensor is one sample set: no batching along axis 0.
    lowbit.run_json(path, f"npy:{tmp_path / 'x.npy'}", tmp_path, "--save-outputs", out, "--batch-size", str(len(x)))
    got = R.load_saved_outputs(out)
    if layout == 0:
        want = R.run_ort(path, {"x": x})
    else:
        # ORT runs only layout 0: the reference is the time-major twin, transposed.
        twin = tmp_path / "rnn_time_major.onnx"
        save({k: v for k, v in attrs.items() if k != "layout"}, [steps, batch, size], twin)
        ref = R.run_ort(twin, {"x": x.transpose(1, 0, 2).copy()})
        want = {k: v.transpose(2, 0, 1, 3) if k == "y" else v.transpose(1, 0, 2) for k, v in ref.items()}
    for name in outputs:
        assert got[name].shape == want[name].shape, f"{name}: shape {got[name].shape} != ORT {want[name].shape}"
        err = R.max_rel_error(got[name], want[name])
        assert err <= REL_TOL, f"{name}: max rel err {err:.3g}"
