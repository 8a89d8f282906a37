"""`lowbit info MODEL --json` agrees with the `onnx` package's view of the same file:
inputs/outputs (names, element types, ranks, static dims), op histogram, node count, opset and
parameter count (= sum of the sizes of the floating-point initializers).
"""
from __future__ import annotations

import json
from collections import Counter

import onnx
import pytest

import ort_reference as R
from ort_reference import describe_proc as describe

FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
               onnx.TensorProto.BFLOAT16}

# Accepted spellings of an element type in lowbit's JSON.
DTYPE_ALIASES = {
    onnx.TensorProto.FLOAT: {"float32", "float", "f32", "fp32"},
    onnx.TensorProto.INT64: {"int64", "i64"},
}


def onnx_view(path):
    m = onnx.load(str(path))
    g = m.graph
    inits = {t.name for t in g.initializer}

    def values(vis):
        out = []
        for v in vis:
            tt = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                    for d in tt.shape.dim]
            out.append({"name": v.name, "elem": tt.elem_type, "shape": dims})
        return out

    params = 0
    for t in g.initializer:
        if t.data_type in FLOAT_TYPES:
            n = 1
            for d in t.dims:
                n *= d
            params += n
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    return {
        "inputs": values([i for i in g.input if i.name not in inits]),
        "outputs": values(g.output),
        "ops": dict(Counter(n.op_type for n in g.node)),
        "parameters": params,
        "opset": opset,
        "nodes": len(g.node),
    }


def _check_values(kind, got, want):
    assert isinstance(got, list), f"JSON '{kind}s' is not a list: {got!r}"
    assert [v.get("name") for v in got] == [v["name"] for v in want], (
        f"{kind} names {[v.get('name') for v in got]} != {[v['name'] for v in want]}")
    for g, w in zip(got, want):
        dtype = str(g.get("dtype", "")).lower()
        assert dtype in DTYPE_ALIASES.get(w["elem"], {dtype}), (
            f"{kind} {w['name']}: dtype {g.get('dtype')!r}, onnx elem type {w['elem']}")
        shape = g.get("shape")
        assert isinstance(shape, list) and len(shape) == len(w["shape"]), (
            f"{kind} {w['name']}: shape {shape} vs onnx {w['shape']}")
        for i, (a, b) in enumerate(zip(shape, w["shape"])):
            if isinstance(b, int) and b > 0:  # a fixed size: as a number (or its decimal text)
                assert a == b or a == str(b), f"{kind} {w['name']}: dim {i} is {a!r}, onnx says {b}"
            else:  # symbolic/unknown: its name, null or a negative marker, never a made-up size
                assert a is None or (isinstance(a, str) and not a.isdigit()) or (
                    isinstance(a, int) and a < 0), (
                    f"{kind} {w['name']}: symbolic dim {i} ({b!r}) shown as {a!r}")


@pytest.mark.parametrize("name", R.ALL_MODELS)
def test_info_json_matches_onnx(name, models, lowbit):
    path = models[name]
    proc = lowbit.ok("info", path, "--json", timeout=300)
    try:
        info = json.loads(proc.stdout)
    except ValueError as e:
        pytest.fail(f"`lowbit info --json` stdout is not JSON ({e}):\n{proc.stdout[:2000]}")
    want = onnx_view(path)
    _check_values("input", info.get("inputs"), want["inputs"])
    _check_values("output", info.get("outputs"), want["outputs"])
    assert info.get("ops") == want["ops"], (
        f"op histogram differs: lowbit-only {dict(Counter(info.get('ops')) - Counter(want['ops']))}"
        f", onnx-only {dict(Counter(want['ops']) - Counter(info.get('ops')))}")
    assert info.get("nodes") == want["nodes"], (info.get("nodes"), want["nodes"])
    assert info.get("parameters") == want["parameters"], (info.get("parameters"),
                                                           want["parameters"])
    assert info.get("opset") == want["opset"], (info.get("opset"), want["opset"])


def test_info_text_mentions_ops(models, lowbit):
    """The human-readable form works too and names the ops and the input."""
    proc = lowbit("info", models["fm_resnet20"], timeout=120)
    assert proc.returncode == 0, describe(proc)
    for word in ("Conv", "BatchNormalization", "input", "logits"):
        assert word in proc.stdout, f"{word!r} not in `lowbit info` output:\n{proc.stdout}"
