"""`lowbit ptq` on bad input: a clear error naming the problem and no output file.

Every case must exit with status 1 (64 allowed for argument-parser usage errors), print a line
with "error" (any case) and the specific word(s) of the case on stderr, never crash (signal,
Swift trap), and leave nothing behind: neither the -o file nor the --json report, nor any
temporary (`.partial`) file in the output folder.

A happy path checks the --json report of fm_resnet20 at W8A8 per-channel: the steps, the
quantizer list and the evaluation on fashion-mnist:test:2000 (quantized top-1 within 1 point of
FP32).
"""
from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest

import ort_reference as R
from ort_reference import CRASH_MARKERS, describe_proc as describe

MODEL = "fm_resnet20"


def _rand(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _good_calib(tmp):
    """8 valid calibration images (the neutral file name keeps the asserted words out of it)."""
    np.save(tmp / "calib.npy", _rand((8, 1, 28, 28)))
    return f"npy:{tmp / 'calib.npy'}"


# Each case: (tmp input folder) -> (extra ptq arguments, [regex that must appear in stderr]).
# The model is fm_resnet20 and -o / --json point into an empty output folder unless the case
# gives its own -o.


def _empty_npy(tmp):
    np.save(tmp / "calib.npy", np.zeros((0, 1, 28, 28), np.float32))
    return ["--calib", f"npy:{tmp / 'calib.npy'}"], [r"sample|empty"]


def _nan_calib(tmp):
    x = _rand((8, 1, 28, 28))
    x[3, 0, 4, 5] = np.nan
    np.save(tmp / "calib.npy", x)
    return ["--calib", f"npy:{tmp / 'calib.npy'}"], [r"\bnan\b"]


def _inf_eval(tmp):
    x = _rand((8, 1, 28, 28), seed=1)
    x[5, 0, 1, 2] = np.inf
    np.save(tmp / "data.npy", x)
    return ["--calib", _good_calib(tmp), "--eval", f"npy:{tmp / 'data.npy'}"], [
        r"\binf(inity|inite)?\b|non-finite"]


def _wrong_shape(tmp):
    np.save(tmp / "calib.npy", _rand((2, 3, 28, 28)))
    return ["--calib", f"npy:{tmp / 'calib.npy'}"], [r"shape"]


def _wrong_dtype(tmp):
    x = np.random.default_rng(0).integers(0, 255, (8, 1, 28, 28)).astype(np.int64)
    np.save(tmp / "calib.npy", x)
    return ["--calib", f"npy:{tmp / 'calib.npy'}"], [r"int64", r"type"]


def _w_bits_1(tmp):
    return ["--calib", _good_calib(tmp), "--w-bits", "1"], [r"bits"]


def _w_bits_17(tmp):
    return ["--calib", _good_calib(tmp), "--w-bits", "17"], [r"bits"]


def _a_bits_0(tmp):
    return ["--calib", _good_calib(tmp), "--a-bits", "0"], [r"bits"]


def _config_weight_bits_20(tmp):
    (tmp / "config.json").write_text(json.dumps({"weight_bits": 20}))
    return ["--calib", _good_calib(tmp), "--config", tmp / "config.json"], [r"bits", r"\b20\b"]


def _config_not_json(tmp):
    (tmp / "config.json").write_text("weight_bits = 8\n[this is not JSON\n")
    return ["--calib", _good_calib(tmp), "--config", tmp / "config.json"], [r"json"]


CASES = {
    "calib-empty-npy": _empty_npy,
    "calib-nan": _nan_calib,
    "eval-inf": _inf_eval,
    "calib-wrong-shape": _wrong_shape,
    "calib-wrong-dtype-int64": _wrong_dtype,
    "w-bits-1": _w_bits_1,
    "w-bits-17": _w_bits_17,
    "a-bits-0": _a_bits_0,
    "config-weight-bits-20": _config_weight_bits_20,
    "config-not-json": _config_not_json,
}


def assert_clean_failure(proc, patterns):
    msg = describe(proc)
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {msg}"
    assert proc.returncode != 0, f"bad input accepted (exit 0): {msg}"
    assert proc.returncode in (1, 64), f"expected exit status 1 (or 64 for usage errors): {msg}"
    for marker in CRASH_MARKERS:
        assert marker not in proc.stderr and marker not in proc.stdout, (
            f"crash marker {marker!r} in output: {msg}")
    err = proc.stderr
    assert "error" in err.lower(), f"no 'error' on stderr: {msg}"
    for pat in patterns:
        assert re.search(pat, err, re.IGNORECASE), (
            f"stderr does not name the problem (/{pat}/i not found): {msg}")


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize("case", list(CASES))
def test_ptq_rejects_bad_input(case, models, lowbit, tmp_path):
    inputs = tmp_path / "in"
    outdir = tmp_path / "out"
    inputs.mkdir()
    outdir.mkdir()
    args, patterns = CASES[case](inputs)
    out, js = outdir / "q.onnx", outdir / "report.json"
    proc = lowbit("ptq", models[MODEL], *args, "-o", out, "--json", js, "--quiet", timeout=300)
    assert_clean_failure(proc, patterns)
    assert not out.exists(), f"{out} written although ptq failed: {describe(proc)}"
    assert not js.exists(), f"{js} written although ptq failed: {describe(proc)}"
    left = _leftovers(outdir)
    assert left == [], f"files left in the output folder ({[n for n in left]}): {describe(proc)}"


def test_ptq_output_into_missing_folder(models, lowbit, tmp_path):
    calib = _good_calib(tmp_path)
    missing = tmp_path / "no_such_folder"
    out = missing / "q.onnx"
    proc = lowbit("ptq", models[MODEL], "--calib", calib, "-o", out, "--quiet", timeout=300)
    assert_clean_failure(proc, [r"does not exist|no such|not found|missing"])
    assert not missing.exists(), f"{missing} was created: {describe(proc)}"
    partial = [p.name for p in tmp_path.iterdir() if "partial" in p.name]
    assert partial == [], f"temporary files left: {partial}"


# --------------------------------------------------------------------------------------------
# Happy path
# --------------------------------------------------------------------------------------------

STEPS = ("fold batchnorm", "cross-layer equalization", "high-bias absorption", "place quantizers",
         "weight ranges", "adaround", "activation ranges", "write QDQ graph")


def test_ptq_json_report_fm_resnet20_w8a8_per_channel(models, lowbit, tmp_path):
    out, js = tmp_path / "q.onnx", tmp_path / "ptq.json"
    lowbit.ok("ptq", models[MODEL], "--calib", "fashion-mnist:train:512", "--per-channel",
              "--eval", "fashion-mnist:test:2000", "-o", out, "--json", js, "--quiet",
              "--adaround-iterations", "100", timeout=600)
    assert out.is_file() and js.is_file(), (out.exists(), js.exists())
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
    report = json.loads(js.read_text())

    steps = report.get("steps")
    assert isinstance(steps, list) and steps, f"no steps in the JSON: {report.keys()}"
    for s in steps:
        assert isinstance(s.get("step"), str), s
        assert isinstance(s.get("seconds"), (int, float)) and s["seconds"] >= 0, s
    names = [s["step"] for s in steps]
    missing = [s for s in STEPS if s not in names]
    assert not missing, f"steps {missing} not in the JSON steps {names}"

    assert report["config"]["per_channel"] is True, report["config"]
    assert report["config"]["weight_bits"] == 8 and report["config"]["activation_bits"] == 8

    quantizers = report["quantizers"]
    weights = [q for q in quantizers if q["kind"] == "weight"]
    acts = [q for q in quantizers if q["kind"] == "activation"]
    assert len(weights) == report["weight_quantizers"] and len(acts) == \
        report["activation_quantizers"], (len(weights), len(acts), report["weight_quantizers"],
                                          report["activation_quantizers"])
    onnx.checker.check_model(str(out))
    graph_inputs = {i.name for i in onnx.load(str(out)).graph.input}
    for q in quantizers:
        for key in ("name", "kind", "bits", "granularity", "scale", "zero_point", "range"):
            assert key in q, f"quantizer lacks {key!r}: {q}"
        # `node`: the node the quantizer belongs to; a graph input has none (absent or null)
        if q["name"] not in graph_inputs or q["kind"] == "weight":
            assert isinstance(q.get("node"), str) and q["node"], f"quantizer lacks 'node': {q}"
        assert q["bits"] == 8, q
        assert len(q["scale"]) == len(q["zero_point"]) >= 1, q
        assert all(s > 0 for s in q["scale"]), q
        lo, hi = q["range"]
        assert lo <= 0 <= hi and lo < hi, f"range {q['range']} must contain 0: {q['name']}"
    for w in weights:
        assert str(w["granularity"]).startswith("per-channel"), (w["name"], w["granularity"])
        # the channel count of the weight it quantizes (fm_resnet20's weights are all >= 10)
        assert len(w["scale"]) >= 10, (w["name"], len(w["scale"]))

    ev = report.get("evaluation")
    assert isinstance(ev, dict), f"--eval given but no evaluation in the JSON: {report.keys()}"
    for key in ("fp32_top1", "quantized_top1", "sqnr_db", "mean_cosine", "argmax_agreement"):
        assert isinstance(ev.get(key), (int, float)), f"evaluation.{key}: {ev}"
    assert ev.get("samples") in (None, 2000), ev
    assert abs(ev["quantized_top1"] - ev["fp32_top1"]) <= 1.0, (
        f"W8A8 per-channel top-1 {ev['quantized_top1']} vs FP32 {ev['fp32_top1']}: more than "
        f"1 point apart")
    ref = R.fm_reference()[MODEL]
    print(f"{MODEL} W8A8 per-channel on fashion-mnist:test:2000: FP32 {ev['fp32_top1']:.2f}%, "
          f"quantized {ev['quantized_top1']:.2f}%, SQNR {ev['sqnr_db']:.1f} dB, cosine "
          f"{ev['mean_cosine']:.5f}, arg-max agreement {ev['argmax_agreement']} "
          f"(reference FP32 on 10k: {ref['fp32_top1_ort']})")


def test_ptq_effort_fast_with_external_data_runs_in_ort(models, lowbit, tmp_path):
    """`--effort fast` rounds to nearest with empirical bias correction (no AdaRound step) and
    `--external-data` puts the weights in `<output>.data`; ONNX Runtime runs the pair and agrees
    with lowbit's own simulation of the file."""
    import onnxruntime as ort
    out, js = tmp_path / "q.onnx", tmp_path / "ptq.json"
    lowbit.ok("ptq", models[MODEL], "--calib", "fashion-mnist:train:256", "--per-channel", "--effort", "fast",
              "--external-data", "-o", out, "--json", js, "--quiet", timeout=600)
    report = json.loads(js.read_text())
    names = [s["step"] for s in report["steps"]]
    assert "adaround" not in names and "bias correction" in names, names
    assert report["config"]["adaround"] is False, report["config"]
    data = tmp_path / "q.onnx.data"
    assert data.is_file() and data.stat().st_size > 200_000, sorted(p.name for p in tmp_path.iterdir())
    assert out.stat().st_size < 100_000, out.stat().st_size  # the weights are not inside
    proto = onnx.load(str(out), load_external_data=False)
    external = [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert len(external) >= 15, len(external)  # every weight of 1 KiB or more
    x = np.load(_good_calib(tmp_path)[len("npy:"):])[:16]
    ort_out = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.save(tmp_path / "x.npy", x)
    lowbit.ok("run", out, "--data", f"npy:{tmp_path / 'x.npy'}", "--save-outputs", tmp_path / "y.npy", "--quiet",
              timeout=300)
    ours = np.load(tmp_path / "y.npy")
    # The logits pass the output quantizer's grid: where float rounding puts a value on the other
    # side of a rounding boundary the engines differ by one step of it, rarely.
    step = next(q for q in report["quantizers"] if q["name"] == "logits")["scale"][0]
    diff = np.abs(ours - ort_out) / step
    assert diff.max() <= 1.01 and diff.mean() <= 0.1, (diff.max(), diff.mean())
