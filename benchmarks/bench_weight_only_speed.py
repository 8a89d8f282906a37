#!/usr/bin/env python3
"""Size and speed of weight-only MatMulNBits files on MiniLM against FP32 in ONNX Runtime.

    python3 benchmarks/bench_weight_only_speed.py [--bits 4 3 2] [--groups 32 64 128] [--runs 50]
        [--threads 1 2] [--json benchmarks/results/weight_only_speed.json] [--under-load "..."]

Files, all from the same MiniLM (`minilm_l6_embed.onnx`):

  - fp32: the float file itself; fp32-pre: ONNX Runtime's `quant_pre_process` of it (what its
    quantizer starts from, constant folding included);
  - lowbit-wB-gG: `lowbit ptq --weights-only --w-bits B --group-size G --range-setting-only`
    (symmetric grids, 256 calibration sentences; `bench_weight_only.quantize_lowbit`): MatMulNBits
    bits=2 at B = 2, bits=4 at B = 3 and 4 (the 3-bit integers in 4-bit fields: ONNX Runtime's
    CPU kernel runs only 2, 4 and 8). Round to nearest by default (`--lowbit-args=""` for GPTQ)
    because it is quicker to make and GPTQ's file has the same layout, bytes and node attributes
    (only the integers differ), so the same size and speed; `bench_weight_only.py` scores both;
  - ort-wB-gG: ONNX Runtime's `MatMulNBitsQuantizer(pre, bits=B, block_size=G)` with its default
    round to nearest (`bench_weight_only.run_ort`); it refuses B = 3, and the refusal is recorded;
  - lowbit-wB-gG-acc4 (timing only, `--accuracy-level4`): lowbit's file with every MatMulNBits'
    `accuracy_level` set to 4, ONNX Runtime's int8-activation compute path. lowbit writes 0 (float
    compute), so that the file computes what lowbit simulates; 4 rounds the activations to int8
    per block inside the kernel, which the cosine bench does not score.

Size: each file's bytes against the float file's, and the bytes of the MatMulNBits inputs
(packed weights, scales, zero points) against the float weights of the MatMuls they replace
(the word embeddings stay float in every file, so the whole file shrinks much less).

Speed: ONNX Runtime (CPU, default graph optimizations, `intra_op_num_threads` = T,
`inter_op_num_threads` = 1, sequential execution) at batch 1 and sequence length 128. Inputs: the
held-out sentences' own tokens (`eval_*`, padding and the inner [CLS]/[SEP] removed) laid end to
end and cut into rows of 126 between one [CLS] and one [SEP], mask all ones; `--inputs` such rows
taken in turn. Per thread count, every session is built, run `--warmup` times, then the files
are timed in rounds (each round one run of every file, in a fresh random order), so a load that
comes and goes on a shared machine reaches every file alike; reported: the median of `--runs`
runs in ms, with the 10th and 90th percentiles, and the ratio of medians to fp32.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_weight_only as W  # noqa: E402  (its quantizer runs, layout reader and checkout record)
from bench_minilm import feeds  # noqa: E402

R = W.R
CLS, SEP = 101, 102


def packed_rows(count: int, length: int = 128) -> list[dict]:
    """`count` inputs `[1, length]` of real tokens: the held-out sentences' tokens end to end."""
    e = feeds("eval")
    stream = [int(t) for ids, mask in zip(e["input_ids"], e["attention_mask"]) for t in ids[mask == 1] if t not in (CLS, SEP)]
    body = length - 2
    assert len(stream) >= count * body, f"{len(stream)} tokens for {count} rows"
    rows = []
    for i in range(count):
        ids = np.array([[CLS, *stream[i * body:(i + 1) * body], SEP]], dtype=np.int64)
        rows.append({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    return rows


def with_accuracy_level(path: Path, out: Path, level: int) -> Path:
    """A copy of `path` whose MatMulNBits nodes have `accuracy_level` = `level`."""
    import onnx

    m = onnx.load(str(path))
    for n in m.graph.node:
        if n.op_type == "MatMulNBits":
            for attr in n.attribute:
                if attr.name == "accuracy_level":
                    attr.i = level
    onnx.save(m, str(out))
    return out


def latencies(files: dict, inputs: list[dict], threads: int, warmup: int, runs: int, seed: int) -> dict:
    """Per file, `runs` wall-clock times in ms of one `session.run` at `threads` threads."""
    import onnxruntime as ort

    sessions = {}
    for name, path in files.items():
        o = ort.SessionOptions()
        o.intra_op_num_threads, o.inter_op_num_threads = threads, 1
        o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sessions[name] = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
    for s in sessions.values():
        for i in range(warmup):
            s.run(None, inputs[i % len(inputs)])
    times = {name: [] for name in files}
    order = list(files)
    rng = random.Random(seed)
    for r in range(runs):
        rng.shuffle(order)
        for name in order:
            start = time.perf_counter()
            sessions[name].run(None, inputs[r % len(inputs)])
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def summary(ms: list[float]) -> dict:
    return {"median_ms": float(np.median(ms)), "p10_ms": float(np.percentile(ms, 10)), "p90_ms": float(np.percentile(ms, 90))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", nargs="+", type=int, default=[4, 3, 2])
    ap.add_argument("--groups", nargs="+", type=int, default=[32, 64, 128])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--inputs", type=int, default=8)
    ap.add_argument("--lowbit-args", default="--range-setting-only",
                    help='more `lowbit ptq` options, one string (--lowbit-args="" for its defaults, GPTQ)')
    ap.add_argument("--accuracy-level4", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--quantize-threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "weight_only_speed.json")
    ap.add_argument("--under-load", default="", help="what else ran on the machine meanwhile")
    a = ap.parse_args(argv)
    a.lowbit_args = a.lowbit_args.split()
    import onnxruntime
    from onnxruntime.quantization.shape_inference import quant_pre_process

    work = Path(tempfile.mkdtemp(prefix="bench-weight-only-speed-"))
    binary = work / "lowbit"
    shutil.copy2(R.lowbit_bin(), binary)
    model = R.model_path(R.MINILM)
    fp32_bytes = model.stat().st_size
    result = {"benchmark": "bench_weight_only_speed.py (issue 24: weight-only MatMulNBits size and speed vs FP32)",
              "commit": W.checkout(binary), "env": R.describe_env(max(a.threads)), "onnxruntime": onnxruntime.__version__,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "under_load": a.under_load or "not stated", "load_average_start": os.getloadavg(),
              "settings": {"bits": a.bits, "groups": a.groups, "threads": a.threads, "runs": a.runs, "warmup": a.warmup,
                           "batch": 1, "sequence_length": 128,
                           "inputs": f"{a.inputs} rows of the eval_* sentences' tokens laid end to end (126 + [CLS], [SEP]), mask all ones",
                           "lowbit_args": W.COMMON + ["--w-bits", "B", "--group-size", "G", *a.lowbit_args],
                           "ort_quantizer": "MatMulNBitsQuantizer(pre, bits=B, block_size=G), default RTN, asymmetric"},
              "fp32_bytes": fp32_bytes, "files": {}, "latency": {}}
    try:
        pre = work / "fp32-pre.onnx"
        quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
        files = {"fp32": model, "fp32-pre": pre}
        for bits, group in [(b, g) for b in a.bits for g in a.groups]:
            for side in ("lowbit", "ort"):
                name = f"{side}-w{bits}-g{group}"
                out = work / f"{name}.onnx"
                print(f"{name} ...", file=sys.stderr, flush=True)
                if side == "lowbit":
                    seconds, proc = W.quantize_lowbit(binary, model, out, bits, group, a.lowbit_args, None, a.quantize_threads, work)
                    row = {"ok": proc.returncode == 0, "seconds": seconds} | ({} if proc.returncode == 0 else {"reason": proc.stderr[-600:]})
                else:
                    row = W.run_ort(pre, out, group, "default", False, bits=bits)
                if row["ok"]:
                    files[name] = out
                    if side == "lowbit" and a.accuracy_level4:
                        files[name + "-acc4"] = with_accuracy_level(out, work / f"{name}-acc4.onnx", 4)
                    row |= {"bytes": out.stat().st_size, "size_vs_fp32": out.stat().st_size / fp32_bytes, "layout": W.nbits_layout(out)}
                    row["layout"]["nbits_vs_float"] = row["layout"]["nbits_bytes"] / max(1, row["layout"]["float_bytes"])
                result["files"][name] = {"bits": bits, "group": group, **row}
        result["files"]["fp32-pre"] = {"ok": True, "bytes": pre.stat().st_size, "size_vs_fp32": pre.stat().st_size / fp32_bytes}
        inputs = packed_rows(a.inputs)
        for threads in a.threads:
            print(f"timing at {threads} threads ...", file=sys.stderr, flush=True)
            times = latencies(files, inputs, threads, a.warmup, a.runs, seed=threads)
            base = float(np.median(times["fp32"]))
            result["latency"][str(threads)] = {
                name: summary(ms) | {"vs_fp32": float(np.median(ms)) / base, "runs_ms": [round(t, 3) for t in ms]}
                for name, ms in times.items()}
        result["load_average_end"] = os.getloadavg()
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nMiniLM weight-only files in ONNX Runtime {onnxruntime.__version__}, batch 1, length 128, "
          f"median of {a.runs} runs (load average {result['load_average_start'][0]:.1f} -> {result['load_average_end'][0]:.1f})\n")
    print("| file | MatMulNBits bits | size vs FP32 | MatMul weights vs float | " + " | ".join(f"{t} thr ms (vs FP32)" for t in a.threads) + " |")
    print("| --- | --- | --- | --- | " + " | ".join("---" for _ in a.threads) + " |")
    for name, f in ({"fp32": {"ok": True, "size_vs_fp32": 1.0}} | result["files"]).items():
        if not f["ok"]:
            print(f"| {name} | refused: {f['reason'][-100:]} | | | " + " | ".join("" for _ in a.threads) + " |")
            continue
        lay = f.get("layout", {})
        for timed in [name] + [name + "-acc4"] * (name + "-acc4" in result["latency"][str(a.threads[0])]):
            cells = [f"{result['latency'][str(t)][timed]['median_ms']:.1f} ({result['latency'][str(t)][timed]['vs_fp32']:.2f}x)"
                     for t in a.threads]
            print(f"| {timed} | {lay.get('bits', '')} | {f['size_vs_fp32']:.3f} | {lay.get('nbits_vs_float', float('nan')):.3f} | "
                  + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
