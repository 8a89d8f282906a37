"""`lowbit debug` (issue 23): the white paper's debugging flow as one command, on fm_mobilenetv2 at
per-tensor W4A8 without CLE (the paper's table-3 pathology: depthwise weights whose channel
ranges differ by orders of magnitude share one 4-bit grid).

- the diagnosis names the cause: the depthwise layers' weight channel ranges;
- the flow tries the paper's fixes and keeps per-channel weights or CLE, the two that cure it;
- the recommended `lowbit ptq` command, run as printed, writes a file whose ONNX Runtime outputs
  on the held-out samples give the loss the flow reported (KL from FP32, within float rounding
  of the outputs: the same seed gives the same file);
- the report is one self-contained page (no script) and the JSON holds the same trials.
"""
from __future__ import annotations

import json
import shlex

import numpy as np

import ort_reference as R

ARGS = ["--calib", "fashion-mnist:train:256", "--w-bits", "4", "--no-cle", "--effort", "fast", "--samples", "32"]


def _kl(reference, quantized):
    def log_softmax(z):
        z = z.astype(np.float64) - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))
    lp, lq = log_softmax(reference), log_softmax(quantized)
    return float((np.exp(lp) * (lp - lq)).sum(1).mean())


def test_debug_finds_the_fix_and_its_command_reproduces(models, lowbit, tmp_path):
    x, _ = R.load_fashion_mnist("test", limit=32)
    np.save(tmp_path / "held.npy", x)
    page, js = tmp_path / "debug.html", tmp_path / "debug.json"
    model = models["fm_mobilenetv2"]
    lowbit.ok("debug", model, "--eval", f"npy:{tmp_path / 'held.npy'}", "-o", page, "--json", js, "--quiet", *ARGS)
    report = json.loads(js.read_text())
    # The cause, named: per-tensor grids of depthwise layers over channel ranges that differ
    # widely (fig. 6), worth more than one bit of SQNR per layer.
    causes = report["run"]["diagnosis"]["causes"]
    ranges = next(c for c in causes if c["kind"] == "weight channel ranges")
    assert sum(r["depthwise"] for r in ranges["roles"]) >= 2, ranges["roles"]
    assert min(ranges["measures"]) >= 6.02
    assert "Weight channel ranges" in page.read_text()
    flow = report["flow"]
    kinds = {f["kind"] for f in flow["recommendedFixes"]}
    assert kinds & {"per-channel weights", "cross-layer equalization"}, flow["recommendedFixes"]
    assert flow["recommendedMeasurement"]["loss"] < flow["baseline"]["loss"]
    assert "<script" not in page.read_text().lower() and "6. The fixes, tried" in page.read_text()
    # Below 8-bit weights, the front of weight mixed precision against model size: each point
    # a run with k weight quantizers at 8 bits, its weight bits growing with k; the page plots
    # loss against size with the Pareto front.
    weights = flow["weightFront"]
    assert [p["fix"]["quantizers"] for p in weights][:3] == [1, 2, 4]
    sizes = [p["measurement"]["weightBits"] for p in weights]
    assert sizes == sorted(sizes) and sizes[0] >= flow["trialBaseline"]["weightBits"] and sizes[-1] > sizes[0]
    assert "Held-out loss (log scale) against the quantized weights" in page.read_text()
    command = shlex.split(report["recommended_command"])
    assert command[:3] == ["lowbit", "ptq", str(model)] and "--samples" not in command
    out = tmp_path / "recommended.onnx"
    command[command.index("-o") + 1] = str(out)
    lowbit.ok(*command[1:], "--quiet")
    fp32 = next(iter(R.run_ort(model, {"input": x}).values()))
    q = next(iter(R.run_ort(out, {"input": x}).values()))
    loss = _kl(fp32, q)
    reported = flow["recommendedMeasurement"]["loss"]
    assert abs(loss - reported) <= 0.02 * reported + 1e-6, (loss, reported)
