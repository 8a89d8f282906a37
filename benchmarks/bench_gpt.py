#!/usr/bin/env python3
"""A decoder language model (issue 24): held-out perplexity of lowbit's weight-only 4-bit files
(round to nearest, GPTQ) and W8A8 file next to ONNX Runtime's MatMulNBits quantizer, every file
run by ONNX Runtime, lowbit's own run of each file beside it.

    python3 benchmarks/make_gpt.py                  # once: .cache/gpt/ (model, calib, held-out)
    python3 benchmarks/bench_gpt.py [--model-dir .cache/gpt] [--groups 128] [--variants ...]
        [--threads 2] [--json benchmarks/results/gpt.json] [--under-load "..."]

The model is `make_gpt.py`'s byte-level GPT (pre-LN, 4 layers, d_model 256, trained on the King
James Bible's first 90%); calibration is its `calib.npy` (256 windows of 128 training bytes,
batches of 16), evaluation its `heldout.npy` (1,024 consecutive windows of 128 bytes of the last
10%). Perplexity: exp of the mean next-token cross-entropy over positions 0..126 of every row
(`make_gpt.perplexity`). Variants, per group size G (the K-rows sharing a 4-bit grid):

  - fp32: the float file;
  - lowbit-rtn: `lowbit ptq --weights-only --w-bits 4 --group-size G --range-setting-only`
    (symmetric int4, MSE ranges per group, round to nearest; written as MatMulNBits);
  - lowbit-gptq: the same without `--range-setting-only` (the default there: AWQ's activation-
    aware channel scales, then GPTQ);
  - lowbit-awq: AWQ's scales with round to nearest (`--range-setting-only --migration awq`);
  - lowbit-gptq-noawq: GPTQ alone (`--migration none`);
  - lowbit-gptq-asym: GPTQ on asymmetric uint4 grids (`{"weight_symmetric": false}`);
  - lowbit-adaround: `--no-gptq` (AdaRound instead of GPTQ; not run by default);
  - ort-rtn, ort-gptq, ort-hqq: `MatMulNBitsQuantizer(model, block_size=G)` with its default
    algorithm (round to nearest, asymmetric min-max per block), `GPTQWeightOnlyQuantConfig`
    (its defaults, the same calibration batches) and `HQQWeightOnlyQuantConfig` on the same file
    (`bench_weight_only.run_ort`);
  - lowbit-w8a8: `lowbit ptq` with its defaults (W8A8 per tensor: AdaRound, MSE ranges, QDQ),
    lowbit-w8a8-pc the same with `--per-channel` (group size does not apply to these two).

Every file is run on the held-out rows by ONNX Runtime (CPU, `--threads`) and by `lowbit run
--save-outputs` (lowbit's simulation; for MatMulNBits files its own kernel of that op); both
perplexities and the largest logit difference between the two runs are recorded. Seconds are
the wall clock of one quantization run (lowbit: the whole `lowbit ptq` command; ONNX Runtime:
its quantizer's `process()` and save). Sizes are the written files' bytes against the float
file's.
Latency: ONNX Runtime's median over 200 runs of one held-out row (batch 1, sequence 128),
interleaved with the float file's runs for the ratio (`bench_minilm.latency_ms`).
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "golden"))
import ort_reference as R  # noqa: E402
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_weight_only import ASYMMETRIC, checkout, run_ort  # noqa: E402
from make_gpt import next_token_loss  # noqa: E402
from bench_minilm import latency_ms  # noqa: E402

COMMON_W4 = ["--weights-only", "--w-bits", "4", "--calib-size", "256", "--batch-size", "16"]
COMMON_W8A8 = ["--calib-size", "256", "--batch-size", "16"]
LOWBIT = {  # name: (arguments, config, grouped)
    "lowbit-rtn": (COMMON_W4 + ["--range-setting-only"], None, True),
    "lowbit-gptq": (COMMON_W4, None, True),
    "lowbit-awq": (COMMON_W4 + ["--range-setting-only", "--migration", "awq"], None, True),
    "lowbit-gptq-noawq": (COMMON_W4 + ["--migration", "none"], None, True),
    "lowbit-gptq-asym": (COMMON_W4, ASYMMETRIC, True),
    "lowbit-adaround": (COMMON_W4 + ["--no-gptq"], None, True),
    "lowbit-w8a8": (COMMON_W8A8, None, False),
    "lowbit-w8a8-pc": (COMMON_W8A8 + ["--per-channel"], None, False),
}
ORT = {"ort-rtn": "default", "ort-gptq": "gptq", "ort-hqq": "hqq"}
DEFAULT_VARIANTS = ["fp32", "lowbit-rtn", "lowbit-awq", "lowbit-gptq-noawq", "lowbit-gptq", "lowbit-gptq-asym", "ort-rtn", "ort-gptq", "ort-hqq",
                    "lowbit-w8a8", "lowbit-w8a8-pc"]


def ort_logits(path: Path, ids: np.ndarray, threads: int) -> np.ndarray:
    return R.run_ort(R.ort_session(path, threads), {"input_ids": ids}, batch_size=64)["logits"]


def lowbit_logits(binary: Path, path: Path, ids_file: Path, threads: int, work: Path) -> np.ndarray:
    """`lowbit run --save-outputs` over the held-out rows."""
    saved = work / "lowbit_logits.npy"
    subprocess.run([str(binary), "run", str(path), "--data", f"npy:input_ids={ids_file}", "--batch-size", "64",
                    "--save-outputs", str(saved), "--quiet"], check=True, capture_output=True,
                   env=dict(os.environ, LOWBIT_THREADS=str(threads)))
    out = np.load(saved)
    saved.unlink()
    return out


def run_lowbit(binary: Path, model: Path, calib: Path, out: Path, extra: list, config: dict | None, threads: int,
               work: Path) -> dict:
    report = out.with_suffix(".json")
    args = [str(binary), "ptq", str(model), "--calib", f"npy:input_ids={calib}", "-o", str(out), "--json",
            str(report), "--quiet", *extra]
    if config is not None:
        path = work / "config.json"
        path.write_text(json.dumps(config))
        args += ["--config", str(path)]
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=dict(os.environ, LOWBIT_THREADS=str(threads)))
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        return {"ok": False, "seconds": seconds, "reason": proc.stderr.strip()[-600:]}
    r = json.loads(report.read_text())
    row = {"ok": True, "seconds": seconds, "args": extra + (["--config", json.dumps(config)] if config else []),
           "steps": {s["step"]: {"seconds": round(s["seconds"], 2), "detail": s.get("detail")} for s in r["steps"]}}
    for key in ("gptq_undone", "adaround_undone"):
        if r.get(key) is not None:
            row[key] = r[key]
    if r.get("gptq"):
        row["proxy_loss_nearest"] = sum(x["nearest_loss"] for x in r["gptq"])
        row["proxy_loss_gptq"] = sum(x["gptq_loss"] for x in r["gptq"])
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", type=Path, default=ROOT / ".cache" / "gpt")
    ap.add_argument("--groups", nargs="+", type=int, default=[128])
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=["fp32", *LOWBIT, *ORT])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "gpt.json")
    ap.add_argument("--under-load", default="", help="what else ran on the machine meanwhile")
    a = ap.parse_args(argv)
    import onnxruntime
    import onnxruntime.quantization.matmul_nbits_quantizer as nbits

    logging.getLogger(nbits.__name__).setLevel(logging.WARNING)  # one line per node otherwise

    d = a.model_dir
    model, calib_file, held_file = d / "model.onnx", d / "calib.npy", d / "heldout.npy"
    if not model.is_file():
        sys.exit(f"{model} not found: run `python3 benchmarks/make_gpt.py` first")
    made = json.loads((d / "model.json").read_text())
    calib, held = np.load(calib_file), np.load(held_file)
    batches = [{"input_ids": calib[i:i + 16]} for i in range(0, len(calib), 16)]
    snapshot = Path(tempfile.mkdtemp(prefix="bench-gpt-"))
    binary = snapshot / "lowbit"
    shutil.copy2(R.lowbit_bin(), binary)
    fp32_bytes = model.stat().st_size
    result = {"benchmark": "bench_gpt.py (issue 24: a decoder LM, weight-only 4-bit and W8A8)",
              "commit": checkout(binary), "env": R.describe_env(a.threads), "onnxruntime": onnxruntime.__version__,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "under_load": a.under_load or "not stated",
              "model": {"dir": str(d), "size": made["size"], "settings": made["settings"], "seed": made["seed"],
                        "training": made["training"], "sha256": made["sha256"], "text": made["text"]},
              "settings": {"groups": a.groups, "variants": a.variants, "threads": a.threads,
                           "calibration": f"calib.npy {list(calib.shape)}, batches of 16",
                           "evaluation": f"heldout.npy {list(held.shape)}: perplexity over positions 0..126",
                           "lowbit_args": {k: v[0] for k, v in LOWBIT.items()}},
              "fp32_bytes": fp32_bytes, "rows": []}

    def measure(out: Path, row: dict) -> dict:
        theirs = ort_logits(out, held, a.threads)
        ms, ratio = latency_ms(out, a.threads, reference=model, one={"input_ids": held[:1]})
        row |= {"perplexity": float(np.exp(next_token_loss(theirs, held))), "bytes": out.stat().st_size,
                "size_vs_fp32": out.stat().st_size / fp32_bytes, "latency_ms": ms, "latency_vs_fp32": ratio}
        try:
            ours = lowbit_logits(binary, out, held_file, a.threads, snapshot)
            row |= {"perplexity_lowbit": float(np.exp(next_token_loss(ours, held))),
                    "max_abs_logit_diff_lowbit_vs_ort": float(np.abs(ours - theirs).max())}
        except subprocess.CalledProcessError as e:
            row["lowbit_run_error"] = e.stderr.decode(errors="replace").strip()[-600:]
        return row

    try:
        for group in a.groups:
            for name in a.variants:
                grouped = name in ORT or (name in LOWBIT and LOWBIT[name][2])
                if not grouped and group != a.groups[0]:
                    continue
                print(f"{name}{f' g{group}' if grouped else ''} ...", file=sys.stderr, flush=True)
                out = snapshot / f"{name}-g{group}.onnx"
                if name == "fp32":
                    out, row = model, {"ok": True, "seconds": 0.0}
                elif name in LOWBIT:
                    extra, config, _ = LOWBIT[name]
                    extra = extra + (["--group-size", str(group)] if grouped else [])
                    row = run_lowbit(binary, model, calib_file, out, extra, config, a.threads, snapshot)
                else:
                    row = run_ort(model, out, group, ORT[name], False, batches)
                row = {"variant": name, "group": group if grouped else None, **row}
                if row["ok"]:
                    row = measure(out, row)
                result["rows"].append(row)
                a.json.parent.mkdir(parents=True, exist_ok=True)
                a.json.write_text(json.dumps(result, indent=1) + "\n")
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)

    print(f"\n{made['size']}: held-out perplexity ({held.shape[0]} x {held.shape[1]} bytes), ONNX Runtime and lowbit "
          f"({a.threads} threads)\n")
    print("| variant | group | ppl ORT | ppl lowbit | max logit diff | size vs FP32 | latency vs FP32 | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in result["rows"]:
        g = r["group"] or ""
        if not r["ok"]:
            print(f"| {r['variant']} | {g} | failed: {r['reason'][-120:]} | | | | {r['seconds']:.0f} |")
            continue
        ours = f"{r['perplexity_lowbit']:.4f}" if "perplexity_lowbit" in r else "failed"
        diff = f"{r['max_abs_logit_diff_lowbit_vs_ort']:.1e}" if "max_abs_logit_diff_lowbit_vs_ort" in r else ""
        print(f"| {r['variant']} | {g} | {r['perplexity']:.4f} | {ours} | {diff} | {r['size_vs_fp32']:.3f} "
              f"| {r['latency_vs_fp32'] or 1:.2f} | {r['seconds']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
