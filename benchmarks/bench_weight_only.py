#!/usr/bin/env python3
"""Weight-only low-bit MatMuls on MiniLM (all-MiniLM-L6-v2): lowbit's round to nearest and GPTQ
next to ONNX Runtime's own MatMulNBits quantizer, every file run by ONNX Runtime.

    python3 benchmarks/bench_weight_only.py [--bits 4] [--groups 32 64 128] [--variants ...] [--threads 2]
        [--json benchmarks/results/weight_only.json] [--under-load "..."]

Same model file, same 256 calibration sentences (`../shared/data/minilm/calib_*`, batches of 16),
every written file run by ONNX Runtime (CPU, `--threads`) on the 2,000 held-out evaluation
sentences (`eval_*`), scored against the float model's embeddings: the cosine of each sentence's
quantized and float embedding (mean and min). Per weight width B (`--bits`, default 4; lowbit
writes 2-bit grids as MatMulNBits bits=2 and 3-bit ones in its bits=4 fields, ONNX Runtime's
CPU kernel running only 2, 4 and 8) and group size (the block of K-rows sharing a grid):

  - lowbit-nearest: `lowbit ptq --weights-only --w-bits B --group-size G --range-setting-only`
    (`{"weight_symmetric": true}`: a symmetric signed grid, as set, since lowbit's default at 3
    bits and fewer is asymmetric; MSE ranges per group, round to nearest);
  - lowbit-awq: the same with AWQ's channel scales first (`--migration awq`), rounded to nearest;
  - lowbit-gptq: GPTQ alone (`--migration none`);
  - lowbit-awq-gptq: the default there, AWQ's channel scales then GPTQ;
  - lowbit-nearest-asym, lowbit-gptq-asym: the same with asymmetric unsigned grids
    (`{"weight_symmetric": false}`), ONNX Runtime's default scheme;
  - lowbit-adaround (`--no-gptq`: AdaRound, what ran before GPTQ; group 128 only by default);
  - ort-rtn: `MatMulNBitsQuantizer(model, bits=B, block_size=G)` with its default algorithm
    (round to nearest, asymmetric, min-max per block; it takes B = 2, 4, 8 only, so a 3-bit row
    records its refusal); ort-rtn-sym: `is_symmetric=True`;
  - ort-gptq / ort-gptq-sym: `GPTQWeightOnlyQuantConfig` (its defaults: damping 0.01, block 128,
    no act order) on the same calibration batches;
  - ort-hqq: `HQQWeightOnlyQuantConfig(block_size=G, bits=B)` (half-quadratic optimization of
    each block's scale and zero point, no calibration data).

ONNX Runtime's quantizer finds a MatMul's weight only as an initializer; the exported file feeds
every MatMul through a Transpose of one, so its files are made from `quant_pre_process`'s output
(ONNX Runtime's own preprocessing, constant folding included), as in `bench_minilm.py`. Its GPTQ
imports `torch` only to convert non-numpy calibration data; the data here are numpy arrays, so an
empty stand-in module is installed when torch is missing.

For lowbit's files, `lowbit run` on the first 200 evaluation sentences gives its simulation, and
the largest difference from ONNX Runtime's embeddings is recorded. Sizes are the written files'
bytes against the float file's. Seconds are the wall clock of one quantization run (lowbit: the
whole `lowbit ptq`, model loading and file writing included; ONNX Runtime: its quantizer's
`process()` and save, preprocessing not included).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "golden"))
import ort_reference as R  # noqa: E402
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_minilm import embed, feeds  # noqa: E402  (the same sentences, the same ONNX Runtime run)

COMMON = ["--weights-only", "--calib-size", "256", "--batch-size", "16"]
ASYMMETRIC, SYMMETRIC = {"weight_symmetric": False}, {"weight_symmetric": True}
LOWBIT = {
    "lowbit-nearest": (["--range-setting-only"], SYMMETRIC),
    "lowbit-awq": (["--range-setting-only", "--migration", "awq"], SYMMETRIC),
    "lowbit-gptq": (["--migration", "none"], SYMMETRIC),
    "lowbit-awq-gptq": ([], SYMMETRIC),
    "lowbit-nearest-asym": (["--range-setting-only"], ASYMMETRIC),
    "lowbit-gptq-asym": ([], ASYMMETRIC),
    "lowbit-adaround": (["--no-gptq"], None),
}
ORT = {"ort-rtn": ("default", False), "ort-rtn-sym": ("default", True), "ort-gptq": ("gptq", False), "ort-gptq-sym": ("gptq", True),
       "ort-hqq": ("hqq", False)}
DEFAULT_VARIANTS = [v for v in list(LOWBIT) + list(ORT) if v != "lowbit-adaround"]
CHECKED_ROWS = 200


def score(e: np.ndarray, ref: np.ndarray) -> dict:
    cos = R.row_cosine(e, ref)
    return {"cos_mean": float(cos.mean()), "cos_min": float(cos.min())}


def nbits_layout(path: Path) -> dict:
    """What a written file holds: its MatMulNBits nodes' `bits` values and count, and the bytes of
    their packed weights, scales and zero points (`nbits_bytes`) against the float MatMul
    weights they stand for (`float_bytes`, 4 K N each)."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    sizes = {i.name: len(i.raw_data) or onnx.numpy_helper.to_array(i).nbytes for i in m.graph.initializer}
    nodes = [n for n in m.graph.node if n.op_type == "MatMulNBits"]
    attrs = [{a.name: a.i for a in n.attribute} for n in nodes]
    return {"matmulnbits": len(nodes), "bits": sorted({x["bits"] for x in attrs}),
            "nbits_bytes": sum(sizes.get(i, 0) for n in nodes for i in n.input[1:]),
            "float_bytes": sum(4 * x["K"] * x["N"] for x in attrs)}


def quantize_lowbit(binary: Path, model: Path, out: Path, bits: int, group: int, extra: list, config: dict | None,
                    threads: int, work: Path) -> tuple[float, subprocess.CompletedProcess]:
    """`lowbit ptq` weight-only at `bits` and `group` into `out` (its `--json` beside it):
    (seconds, the finished process)."""
    d = R.minilm_data_dir()
    spec = f"npy:input_ids={d / 'calib_input_ids.npy'},attention_mask={d / 'calib_attention_mask.npy'}"
    report = out.with_suffix(".json")
    args = [str(binary), "ptq", str(model), "--calib", spec, "-o", str(out), "--json", str(report), "--quiet",
            *COMMON, "--w-bits", str(bits), "--group-size", str(group), *extra]
    if config is not None:
        path = work / "grids.json"
        path.write_text(json.dumps(config))
        args += ["--config", str(path)]
    env = dict(os.environ, LOWBIT_THREADS=str(threads))
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    return time.perf_counter() - start, proc


def run_lowbit(binary: Path, model: Path, out: Path, bits: int, group: int, extra: list, config: dict | None, threads: int,
               evaluation: dict, work: Path) -> dict:
    seconds, proc = quantize_lowbit(binary, model, out, bits, group, extra, config, threads, work)
    env = dict(os.environ, LOWBIT_THREADS=str(threads))
    report = out.with_suffix(".json")
    if proc.returncode != 0:
        return {"ok": False, "seconds": seconds, "reason": proc.stderr.strip()[-600:]}
    r = json.loads(report.read_text())
    gptq = r.get("gptq") or []
    row = {"ok": True, "seconds": seconds, "steps": {s["step"]: {"seconds": round(s["seconds"], 2), "detail": s.get("detail")}
                                                       for s in r["steps"]},
           "gptq_undone": r.get("gptq_undone"), "adaround_undone": r.get("adaround_undone")}
    if gptq:
        row["proxy_loss_nearest"] = sum(x["nearest_loss"] for x in gptq)
        row["proxy_loss_gptq"] = sum(x["gptq_loss"] for x in gptq)
    # lowbit's simulation of its own file against ONNX Runtime's run of it.
    checked = {k: v[:CHECKED_ROWS] for k, v in evaluation.items()}
    for k, v in checked.items():
        np.save(work / f"check_{k}.npy", v)
    saved = work / "simulation.npy"
    data = "npy:" + ",".join(f"{k}={work / f'check_{k}.npy'}" for k in checked)
    subprocess.run([str(binary), "run", str(out), "--data", data, "--save-outputs", str(saved), "--quiet"],
                   check=True, env=env, capture_output=True)
    row["max_abs_vs_simulation"] = float(np.abs(np.load(saved) - embed(out, checked, threads)).max())
    return row


def run_ort(pre: Path, out: Path, group: int, algorithm: str, symmetric: bool, batches: list | None = None,
            bits: int = 4) -> dict:
    """ONNX Runtime's MatMulNBitsQuantizer on `pre` at `bits` bits, groups of `group`; `algorithm`
    "default" (round to nearest), "gptq" (calibrated on `batches`, default MiniLM's 256
    calibration sentences in batches of 16) or "hqq" (`symmetric` does not apply to HQQ)."""
    if "torch" not in sys.modules:
        try:
            import torch  # noqa: F401
        except ImportError:
            sys.modules["torch"] = types.ModuleType("torch")  # see the module docstring
    from onnxruntime.quantization.matmul_nbits_quantizer import (GPTQWeightOnlyQuantConfig, HQQWeightOnlyQuantConfig,
                                                                 MatMulNBitsQuantizer)

    if batches is None:
        calib = feeds("calib", 256)
        batches = [{k: v[i:i + 16] for k, v in calib.items()} for i in range(0, 256, 16)]

    class Reader:
        """The calibration batches; ONNX Runtime's GPTQ iterates over a copy of the reader."""

        def __iter__(self):
            return iter(batches)

        def get_next(self):
            return None

    config = {"gptq": lambda: GPTQWeightOnlyQuantConfig(calibration_data_reader=Reader()),
              "hqq": lambda: HQQWeightOnlyQuantConfig(block_size=group, bits=bits)}.get(algorithm, lambda: None)()
    start = time.perf_counter()
    try:
        q = MatMulNBitsQuantizer(str(pre), bits=bits, block_size=group, is_symmetric=symmetric, algo_config=config)
        q.process()
        q.model.save_model_to_file(str(out))
    except Exception as e:  # noqa: BLE001 - a peer's failure is a result, not a crash of the benchmark
        return {"ok": False, "seconds": time.perf_counter() - start, "reason": f"{type(e).__name__}: {e}"[-600:]}
    return {"ok": True, "seconds": time.perf_counter() - start}


def checkout(binary: Path) -> dict:
    c = R.git_checkout()
    iso = lambda t: datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="seconds")  # noqa: E731
    return c | {"binary": str(R.lowbit_bin()), "binary_mtime": iso(R.lowbit_bin().stat().st_mtime),
                "binary_sha256": R._sha256(binary), "binary_snapshot": "copied at the start; every lowbit command ran the copy"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", nargs="+", type=int, default=[4], help="weight widths (lowbit's --w-bits)")
    ap.add_argument("--groups", nargs="+", type=int, default=[32, 64, 128])
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(LOWBIT) + list(ORT))
    ap.add_argument("--adaround-groups", nargs="*", type=int, default=[128],
                    help="group sizes that also get lowbit-adaround (slow: about 6 minutes each)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "weight_only.json")
    ap.add_argument("--under-load", default="", help="what else ran on the machine meanwhile")
    a = ap.parse_args(argv)
    import onnxruntime
    from onnxruntime.quantization.shape_inference import quant_pre_process

    snapshot = Path(tempfile.mkdtemp(prefix="bench-weight-only-"))
    binary = snapshot / "lowbit"
    shutil.copy2(R.lowbit_bin(), binary)
    commit = checkout(binary)
    model = R.model_path(R.MINILM)
    evaluation = feeds("eval")
    fp32_bytes = model.stat().st_size
    result = {"benchmark": "bench_weight_only.py (issue 24: weight-only low-bit MatMul, GPTQ)", "commit": commit,
              "env": R.describe_env(a.threads), "onnxruntime": onnxruntime.__version__,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "under_load": a.under_load or "not stated",
              "settings": {"bits": a.bits, "groups": a.groups, "variants": a.variants, "adaround_groups": a.adaround_groups,
                           "threads": a.threads, "calibration": "calib_* 256 sentences, batches of 16",
                           "evaluation": f"eval_* {len(evaluation['input_ids'])} sentences", "lowbit_args": COMMON,
                           "checked_rows": CHECKED_ROWS},
              "fp32_bytes": fp32_bytes, "rows": []}
    try:
        reference = embed(model, evaluation, a.threads)
        pre = snapshot / "pre.onnx"
        quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
        for bits, group in [(b, g) for b in a.bits for g in a.groups]:
            names = a.variants + (["lowbit-adaround"] if group in a.adaround_groups and "lowbit-adaround" not in a.variants else [])
            for name in names:
                out = snapshot / f"{name}-w{bits}-g{group}.onnx"
                print(f"W{bits} group {group}: {name} ...", file=sys.stderr, flush=True)
                if name in LOWBIT:
                    extra, config = LOWBIT[name]
                    row = run_lowbit(binary, model, out, bits, group, extra, config, a.threads, evaluation, snapshot)
                else:
                    row = run_ort(pre, out, group, *ORT[name], bits=bits)
                row = {"variant": name, "bits": bits, "group": group, **row}
                if row["ok"]:
                    row |= score(embed(out, evaluation, a.threads), reference)
                    row["bytes"] = out.stat().st_size
                    row["size_vs_fp32"] = row["bytes"] / fp32_bytes
                    row["layout"] = nbits_layout(out)
                result["rows"].append(row)
                a.json.parent.mkdir(parents=True, exist_ok=True)
                a.json.write_text(json.dumps(result, indent=1))
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)

    print(f"\nMiniLM weight-only, 256 calibration / {len(evaluation['input_ids'])} held-out sentences, "
          f"cosine with FP32 in ONNX Runtime ({a.threads} threads)\n")
    print("| bits | group | variant | cos mean | cos min | size vs FP32 | seconds | lowbit vs ORT |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in result["rows"]:
        if not r["ok"]:
            print(f"| {r['bits']} | {r['group']} | {r['variant']} | failed: {r['reason'][-120:]} | | | {r['seconds']:.0f} | |")
            continue
        sim = f"{r['max_abs_vs_simulation']:.1e}" if "max_abs_vs_simulation" in r else ""
        print(f"| {r['bits']} | {r['group']} | {r['variant']} | {r['cos_mean']:.4f} | {r['cos_min']:.4f} | {r['size_vs_fp32']:.3f} "
              f"| {r['seconds']:.0f} | {sim} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
