"""AIMET encodings (`lowbit ptq --encodings PREFIX`, `--load-encodings FILE`): the hand-over to
Qualcomm's toolchain writes PREFIX.encodings and the float model they apply to (PREFIX.onnx), and
reading them back writes the same QDQ graph (nodes, initializers, inputs and outputs; shape
annotations aside), whose outputs in ONNX Runtime are the original file's, bit for bit.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import ort_reference as R


def _content(path):
    g = onnx.load(str(path)).graph
    nodes = [(n.op_type, list(n.input), list(n.output), [onnx.helper.printable_attribute(a) for a in n.attribute]) for n in g.node]
    inits = {i.name: (i.data_type, numpy_helper.to_array(i).tobytes()) for i in g.initializer}
    return nodes, inits, [str(v) for v in g.input], [str(v) for v in g.output]


@pytest.mark.parametrize("version", ["1.0.0", "2.0.0", "0.6.1"])
@pytest.mark.parametrize("name, extra", [
    ("fm_mobilenetv2", ["--per-channel", "--w-bits", "4"]), ("fm_inception", []),
])
def test_encodings_round_trip(name, extra, version, models, lowbit, tmp_path):
    q, prefix, back = tmp_path / "q.onnx", tmp_path / "hand", tmp_path / "back.onnx"
    lowbit.ok("ptq", models[name], "--calib", "fashion-mnist:train:256", "-o", q, "--effort", "fast", "--quiet",
              "--encodings", prefix, "--encodings-version", version, *extra)
    enc = json.loads((tmp_path / "hand.encodings").read_text())
    assert enc["version"] == version
    lowbit.ok("ptq", tmp_path / "hand.onnx", "--load-encodings", tmp_path / "hand.encodings", "-o", back, "--quiet", *extra)
    assert _content(back) == _content(q)
    x, _ = R.load_fashion_mnist("test", limit=500)
    a = next(iter(R.run_ort(q, {"input": x}).values()))
    b = next(iter(R.run_ort(back, {"input": x}).values()))
    assert np.array_equal(a, b)


def test_encodings_entries(models, lowbit, tmp_path):
    """1.0.0 as aimet-onnx writes it: symmetric weights signed with offset -2^(b-1), activations
    unsigned with offset -z, per-channel weights as PER_CHANNEL lists."""
    lowbit.ok("ptq", models["fm_resnet20"], "--calib", "fashion-mnist:train:128", "-o", tmp_path / "q.onnx", "--effort", "fast",
              "--quiet", "--per-channel", "--encodings", tmp_path / "hand")
    enc = json.loads((tmp_path / "hand.encodings").read_text())
    assert enc["param_encodings"] and enc["activation_encodings"]
    for e in enc["param_encodings"]:
        assert e["dtype"] == "INT" and e["bw"] == 8 and e["is_sym"] is True and e["enc_type"] == "PER_CHANNEL"
        assert set(e["offset"]) == {-128} and len(e["scale"]) == len(e["offset"]) > 1
    for e in enc["activation_encodings"]:
        assert e["is_sym"] is False and e["enc_type"] == "PER_TENSOR" and -255 <= e["offset"][0] <= 0
    g = onnx.load(str(tmp_path / "hand.onnx")).graph
    names = {i.name for i in g.initializer} | {o for n in g.node for o in n.output} | {i.name for i in g.input}
    assert all(e["name"] in names for e in enc["param_encodings"] + enc["activation_encodings"])


@pytest.mark.parametrize("content, phrase", [
    ("{not json", "not JSON"),
    ('{"version": "9.9.9"}', "version '9.9.9'"),
    ('{"version": "2.0.0", "encodings": [{"name": "nowhere", "output_dtype": "uint8", "y_scale": 0.1}]}', "'nowhere'"),
    ('{"version": "2.0.0", "encodings": [{"name": "input", "output_dtype": "uint8", "y_scale": -1}]}', "positive"),
    ('{"version": "2.0.0", "encodings": [{"name": "input", "output_dtype": "float16", "y_scale": 1}]}', "not an integer type"),
    ('{"version": "1.0.0", "activation_encodings": [{"name": "input", "bw": 8, "is_sym": false, "scale": [0.1], "offset": [1e30], "enc_type": "PER_TENSOR"}]}', "sensible size"),
])
def test_bad_encodings_files_are_refused(content, phrase, models, lowbit, tmp_path):
    (tmp_path / "e.json").write_text(content)
    proc = lowbit("ptq", models["fm_resnet20"], "--load-encodings", tmp_path / "e.json", "-o", tmp_path / "q.onnx", "--quiet")
    assert proc.returncode == 1 and phrase in proc.stderr, R.describe_proc(proc)
    assert not (tmp_path / "q.onnx").exists()


def test_load_encodings_takes_no_calibration(models, lowbit, tmp_path):
    proc = lowbit("ptq", models["fm_resnet20"], "--load-encodings", tmp_path / "e.json", "--calib", "fashion-mnist:train:8",
                  "-o", tmp_path / "q.onnx")
    assert proc.returncode != 0 and "leave out --calib" in proc.stderr
    proc = lowbit("ptq", models["fm_resnet20"], "-o", tmp_path / "q.onnx")
    assert proc.returncode != 0 and "--calib is needed" in proc.stderr


def test_entries_at_constants_and_removed_values_are_left_out(models, lowbit, tmp_path):
    """aimet-onnx writes entries on a Clip's bound (a Constant's output) and on values that BatchNorm
    folding removes: reading such a file leaves them out and says how many, instead of refusing it;
    the file written is the one without them."""
    model = models["fm_mobilenetv2"]
    lowbit.ok("ptq", model, "--calib", "fashion-mnist:train:128", "-o", tmp_path / "q.onnx", "--effort", "fast", "--quiet",
              "--encodings", tmp_path / "hand")
    enc = json.loads((tmp_path / "hand.encodings").read_text())
    acts = enc["activation_encodings"]
    lowbit.ok("ptq", model, "--load-encodings", tmp_path / "hand.encodings", "-o", tmp_path / "plain.onnx", "--quiet")
    acts += [dict(acts[0], name="/features/features.0/features.0.2/Constant_output_0"),
             dict(acts[0], name="/features/features.0/features.0.0/Conv_output_0")]
    (tmp_path / "extra.encodings").write_text(json.dumps(enc))
    lowbit.ok("ptq", model, "--load-encodings", tmp_path / "extra.encodings", "-o", tmp_path / "extra.onnx", "--quiet",
              "--json", tmp_path / "extra.json")
    detail = next(s["detail"] for s in json.loads((tmp_path / "extra.json").read_text())["steps"]
                  if s["step"] == "load encodings")
    assert "1 entries at constants left out (/features/features.0/features.0.2/Constant_output_0)" in detail, detail
    assert "removed left out (/features/features.0/features.0.0/Conv_output_0)" in detail, detail
    assert _content(tmp_path / "extra.onnx") == _content(tmp_path / "plain.onnx")
