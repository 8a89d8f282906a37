#!/usr/bin/env python3
"""W8A8 on a real transformer: all-MiniLM-L6-v2 (sentence embeddings), lowbit vs ONNX Runtime.

Same model file, same 256 calibration sentences (`../shared/data/minilm/calib_*`), every written
file run by ONNX Runtime on the 2,000 evaluation sentences (`eval_*`). Without labels, each file
is scored against the float model's embeddings:

  - cos mean / cos min: cosine between the quantized and the float embedding of each sentence;
  - nn: how often a sentence's nearest neighbour (highest cosine among the other 1,999) is the
    one the float model picks: what a semantic search over these embeddings would return.

Rows: lowbit's default pipeline (per tensor, per channel), the same with `--mixed-precision 18`
(the 18 activation quantizers most sensitive alone at 16 bits) or `--per-channel-activations`
(`-pca`: one 8-bit grid per hidden channel on the residual stream), and ONNX Runtime's
`quantize_static` (QDQ, per-tensor and per-channel int8 weights, uint8 activations, MinMax
calibration, after `quant_pre_process`). The `-fast` rows split lowbit's transformer default
(`--effort fast`): SmoothQuant and per-channel residual-stream grids together (`lowbit-pc-fast`),
SmoothQuant alone (`-sq`), per-channel grids alone (`-peg`), neither (`-nomig`); `-norot` leaves
out the online Hadamard rotation of the layer inputs (`--no-rotation`), `-float-tables` keeps the
embedding tables float (`--no-embedding-tables`). NNCF rows: `nncf.quantize`
with its transformer preset, with and without its SmoothQuant. Seconds are the wall clock of one
quantization run. Every row also gives the written file's size and its ONNX Runtime latency at
batch 1, sequence 128 (the evaluation sentences' tokens run together; median of 200 runs after 5
warm-up runs, same threads), next to the float model's (`fp32` row), and the ratio of the two
medians with the file's and the float model's runs interleaved (`x fp32`). `nncf` is installed by hand
(`pip install nncf`).

    python3 benchmarks/bench_minilm.py [--threads 2] [--variants lowbit-pt lowbit-pt-mp18 ort-pt ...]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "golden"))
import ort_reference as R  # noqa: E402

LOWBIT_VARIANTS = {
    "lowbit-pt": [],
    "lowbit-pc": ["--per-channel"],
    "lowbit-pt-mp18": ["--mixed-precision", "18"],
    "lowbit-pc-mp18": ["--per-channel", "--mixed-precision", "18"],
    "lowbit-pt-pca": ["--per-channel-activations"],
    "lowbit-pc-pca": ["--per-channel", "--per-channel-activations"],
    "lowbit-pt-fast": ["--effort", "fast"],
    "lowbit-pc-pca-fast": ["--per-channel", "--per-channel-activations", "--effort", "fast"],
    "lowbit-pc-mp18-fast": ["--per-channel", "--mixed-precision", "18", "--effort", "fast"],
    "lowbit-pc-fast": ["--per-channel", "--effort", "fast"],
    "lowbit-pc-fast-sq": ["--per-channel", "--effort", "fast", "--no-per-channel-activations"],
    "lowbit-pc-fast-peg": ["--per-channel", "--effort", "fast", "--migration", "none", "--per-channel-activations"],
    "lowbit-pc-fast-nomig": ["--per-channel", "--effort", "fast", "--migration", "none"],
    "lowbit-pc-norot": ["--per-channel", "--no-rotation"],
    "lowbit-pc-float-tables": ["--per-channel", "--no-embedding-tables"],
    "lowbit-pc-fast-norot": ["--per-channel", "--effort", "fast", "--no-rotation"],
    "lowbit-pt-nomig": ["--migration", "none"],
    "lowbit-pc-nomig": ["--per-channel", "--migration", "none"],
    "lowbit-pc-pca-nomig": ["--per-channel", "--per-channel-activations", "--migration", "none"],
}
ORT_VARIANTS = {"ort-pt": False, "ort-pc": True}
# NNCF's post-training quantization of the ONNX file with its transformer preset (SmoothQuant on
# MatMuls, then min-max ranges and fast bias correction), and the same preset without SmoothQuant.
NNCF_VARIANTS = {"nncf": True, "nncf-no-smoothquant": False}


def feeds(split: str, rows: int | None = None) -> dict:
    d = R.minilm_data_dir()
    return {k: np.load(d / f"{split}_{k}.npy")[:rows].astype(np.int64) for k in ("input_ids", "attention_mask")}


def embed(path: Path, data: dict, threads: int) -> np.ndarray:
    return R.run_ort(R.ort_session(path, threads), data, batch_size=100)["embedding"].astype(np.float64)


def score(e: np.ndarray, ref: np.ndarray) -> dict:
    cos = R.row_cosine(e, ref)
    s, sq = ref @ ref.T, e @ e.T
    np.fill_diagonal(s, -9)
    np.fill_diagonal(sq, -9)
    return {"cos_mean": float(cos.mean()), "cos_min": float(cos.min()), "nn": float((s.argmax(1) == sq.argmax(1)).mean())}


def sequence_128() -> dict:
    """One input of 128 tokens: the evaluation sentences' tokens (padding left out) run together."""
    e = feeds("eval", 64)
    ids = np.concatenate([row[mask == 1] for row, mask in zip(e["input_ids"], e["attention_mask"])])[:128]
    assert ids.size == 128
    return {"input_ids": ids[None].astype(np.int64), "attention_mask": np.ones((1, 128), np.int64)}


def latency_ms(path: Path, threads: int, runs: int = 200, reference: Path | None = None,
               one: dict | None = None) -> tuple[float, float | None]:
    """Median ONNX Runtime wall time of one forward pass on `one` (default: MiniLM's batch-1,
    sequence-128 input), and with
    `reference` the ratio of that median to the reference file's, the two files' runs
    interleaved so that both see the same machine (this one's timings drift by a third from
    minute to minute)."""
    sessions = [R.ort_session(path, threads)] + ([R.ort_session(reference, threads)] if reference else [])
    one = one if one is not None else sequence_128()
    for session in sessions:
        for _ in range(5):
            session.run(None, one)
    times = [[] for _ in sessions]
    for _ in range(runs):
        for session, t in zip(sessions, times):
            start = time.perf_counter()
            session.run(None, one)
            t.append(time.perf_counter() - start)
    medians = [float(np.median(t) * 1000) for t in times]
    return medians[0], (medians[0] / medians[1] if reference else None)


def file_facts(path: Path, threads: int, reference: Path | None = None) -> dict:
    ms, ratio = latency_ms(path, threads, reference=reference)
    return {"megabytes": path.stat().st_size / 1e6, "latency_ms": ms, "latency_vs_fp32": ratio}


def run_lowbit(model: Path, out: Path, extra: list, threads: int) -> tuple[float, dict]:
    d = R.minilm_data_dir()
    spec = f"npy:input_ids={d / 'calib_input_ids.npy'},attention_mask={d / 'calib_attention_mask.npy'}"
    report = out.with_suffix(".json")
    env = dict(os.environ, LOWBIT_THREADS=str(threads))
    start = time.perf_counter()
    subprocess.run([str(R.lowbit_bin()), "ptq", str(model), "--calib", spec, "--calib-size", "256", "--batch-size", "16",
                    "-o", str(out), "--json", str(report), "--quiet", *extra], check=True, env=env)
    return time.perf_counter() - start, json.loads(report.read_text())


def run_ort(model: Path, out: Path, per_channel: bool) -> float:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calib = feeds("calib", 256)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = [{k: v[i:i + 16] for k, v in calib.items()} for i in range(0, 256, 16)]

        def get_next(self):
            return self.batches.pop(0) if self.batches else None

    start = time.perf_counter()
    pre = out.with_name(out.stem + ".pre.onnx")
    # MiniLM's dynamic shapes defeat ORT's symbolic shape inference; its graph optimizations still run.
    quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=per_channel, calibrate_method=CalibrationMethod.MinMax)
    return time.perf_counter() - start


def run_nncf(model: Path, out: Path, smooth_quant: bool) -> tuple[float, dict]:
    """`nncf.quantize` (ModelType.TRANSFORMER) on the same 256 calibration sentences in batches of
    16; a failure is recorded as the row's result."""
    import nncf
    import onnx
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    calib = feeds("calib", 256)
    items = [{k: v[i:i + 16] for k, v in calib.items()} for i in range(0, 256, 16)]
    advanced = None if smooth_quant else AdvancedQuantizationParameters(
        smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1))
    start = time.perf_counter()
    try:
        q = nncf.quantize(onnx.load(str(model)), nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                          subset_size=256, advanced_parameters=advanced)
    except Exception as e:  # noqa: BLE001 - a peer's failure is a result
        return time.perf_counter() - start, {"failed": f"{type(e).__name__}: {e}"[-300:], "nncf": nncf.__version__}
    onnx.save(q, str(out))
    return time.perf_counter() - start, {"nncf": nncf.__version__}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=["lowbit-pt", "lowbit-pt-mp18", "lowbit-pc-mp18", "ort-pt", "ort-pc"],
                    choices=list(LOWBIT_VARIANTS) + list(ORT_VARIANTS) + list(NNCF_VARIANTS))
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "minilm.json"))
    ap.add_argument("--under-load", default="", help="what else ran on the machine meanwhile")
    args = ap.parse_args()

    model = R.model_path(R.MINILM)
    work = ROOT / "out" / "bench_minilm"
    work.mkdir(parents=True, exist_ok=True)
    evaluation = feeds("eval")
    reference = embed(model, evaluation, args.threads)
    rows = [{"variant": "fp32", "seconds": 0.0, "steps": {}, **score(reference, reference), **file_facts(model, args.threads)}]
    for name in args.variants:
        out = work / f"{name}.onnx"
        print(f"{name} ...", file=sys.stderr, flush=True)
        if name in LOWBIT_VARIANTS:
            seconds, report = run_lowbit(model, out, LOWBIT_VARIANTS[name], args.threads)
            detail = {s["step"]: round(s["seconds"], 1) for s in report["steps"]}
        elif name in NNCF_VARIANTS:
            seconds, detail = run_nncf(model, out, NNCF_VARIANTS[name])
            if "failed" in detail:
                rows.append({"variant": name, "seconds": seconds, "steps": detail, "cos_mean": None, "cos_min": None, "nn": None})
                continue
        else:
            seconds, detail = run_ort(model, out, ORT_VARIANTS[name]), {}
        rows.append({"variant": name, "seconds": seconds, "steps": detail, **score(embed(out, evaluation, args.threads), reference),
                     **file_facts(out, args.threads, reference=model)})

    print(f"\nMiniLM W8A8, 256 calibration sentences, 2,000 evaluation sentences, {args.threads} threads\n")
    print("| variant | cos mean | cos min | nn | s/run | MB | ms (batch 1, seq 128) | x fp32 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if r["cos_mean"] is None:
            print(f"| {r['variant']} | failed: {r['steps']['failed'][:80]} | | | {r['seconds']:.0f} |")
            continue
        print(f"| {r['variant']} | {r['cos_mean']:.4f} | {r['cos_min']:.4f} | {r['nn']:.3f} | {r['seconds']:.0f} "
              f"| {r['megabytes']:.1f} | {r['latency_ms']:.1f} | {r['latency_vs_fp32'] or 1:.2f} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({
        "threads": args.threads, **R.git_checkout(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "under_load": args.under_load, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
