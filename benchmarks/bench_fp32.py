#!/usr/bin/env python3
"""FP32 inference time: lowbit vs ONNX Runtime (CPU), same thread count, same data.

    python3 benchmarks/bench_fp32.py [--threads N] [--models resnet18 fm_resnet20 fm_mobilenetv2]
                                     [--batches 1 32] [--repeats 3] [--check]

lowbit: `lowbit run MODEL --data npy:x.npy --batch-size B --json out.json --quiet` with
LOWBIT_THREADS=N (lowbit keeps OpenBLAS single-threaded itself); its JSON `samples_per_second`
excludes model loading. ONNX Runtime: in-process, intra_op_num_threads=N, inter_op_num_threads=1,
one warm-up batch excluded, then the same samples in batches of B. Each side is measured
--repeats times and the best run kept. Writes benchmarks/results/fp32.json and prints a table;
the target is lowbit/ORT <= 2 at batch 32 (--check: exit 1 when it is missed).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "golden"))

import ort_reference as R  # noqa: E402

TARGET_RATIO = 2.0
TARGET_BATCH = 32


def samples_for(batch: int) -> int:
    """64 samples at batch 1, 8 batches otherwise (256 at batch 32)."""
    return max(64, 8 * batch)


def bench_lowbit(binary, model, x_path, batch, threads, repeats):
    # lowbit splits work over LOWBIT_THREADS workers itself and calls OpenBLAS single-threaded
    # (openblas_set_num_threads(1)), so LOWBIT_THREADS is the one knob.
    env = {"LOWBIT_THREADS": str(threads)}
    best, runs, reported_threads = None, [], None
    with tempfile.TemporaryDirectory(prefix="lowbit-bench-") as tmp:
        out = Path(tmp) / "run.json"
        for _ in range(repeats):
            proc = R.run_lowbit(["run", model, "--data", f"npy:{x_path}", "--batch-size",
                                 str(batch), "--json", out, "--quiet"],
                                env=env, binary=binary, timeout=3600)
            if proc.returncode != 0 or not out.is_file():
                raise RuntimeError(R.describe_proc(proc, limit=1500))
            rep = json.loads(out.read_text())
            out.unlink()
            sps = float(rep["samples_per_second"])
            runs.append(sps)
            reported_threads = rep.get("threads")
            best = sps if best is None else max(best, sps)
    return {"samples_per_second": best, "runs": runs, "reported_threads": reported_threads}


def bench_ort(model, x, batch, threads, repeats):
    sess = R.ort_session(model, threads=threads)
    name = sess.get_inputs()[0].name
    outs = [o.name for o in sess.get_outputs()]
    sess.run(outs, {name: x[:batch]})  # warm-up, excluded
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        for start in range(0, len(x), batch):
            sess.run(outs, {name: x[start:start + batch]})
        runs.append(len(x) / (time.perf_counter() - t))
    return {"samples_per_second": max(runs), "runs": runs}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="threads for both engines (default: os.cpu_count())")
    ap.add_argument("--models", nargs="+", default=["resnet18", "fm_resnet20", "fm_mobilenetv2"],
                    help=f"short names from {', '.join(R.ALL_MODELS[:-1])}")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    ap.add_argument("--repeats", type=int, default=3, help="runs per measurement; best kept")
    ap.add_argument("--lowbit", type=Path, default=None,
                    help="binary (default: env LOWBIT_BIN or .build/release/lowbit)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" /
                    "fp32.json")
    ap.add_argument("--check", action="store_true",
                    help=f"exit 1 unless lowbit/ORT <= {TARGET_RATIO} at batch {TARGET_BATCH}")
    a = ap.parse_args(argv)

    binary = a.lowbit.resolve() if a.lowbit else R.lowbit_bin()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        sys.exit(f"error: lowbit binary not found at {binary} (swift build -c release, or "
                 f"--lowbit / LOWBIT_BIN)")

    rows = []
    with tempfile.TemporaryDirectory(prefix="lowbit-bench-data-") as tmp:
        for name in a.models:
            model = R.model_path(name)
            for batch in a.batches:
                n = samples_for(batch)
                x = R.random_feeds(model, batch=n, seed=0)
                (x,) = x.values()
                x_path = Path(tmp) / f"{name}_{n}.npy"
                if not x_path.exists():
                    np.save(x_path, x)
                row = {"model": name, "batch": batch, "samples": n, "threads": a.threads}
                print(f"... {name} batch {batch} ({n} samples, {a.threads} threads)",
                      file=sys.stderr, flush=True)
                ort = bench_ort(model, x, batch, a.threads, a.repeats)
                row["ort_samples_per_second"] = ort["samples_per_second"]
                row["ort_ms_per_sample"] = 1000.0 / ort["samples_per_second"]
                row["ort_runs"] = ort["runs"]
                try:
                    lb = bench_lowbit(binary, model, x_path, batch, a.threads, a.repeats)
                    row["lowbit_samples_per_second"] = lb["samples_per_second"]
                    row["lowbit_ms_per_sample"] = 1000.0 / lb["samples_per_second"]
                    row["lowbit_runs"] = lb["runs"]
                    row["lowbit_reported_threads"] = lb["reported_threads"]
                    row["ratio"] = row["lowbit_ms_per_sample"] / row["ort_ms_per_sample"]
                    if lb["reported_threads"] not in (None, a.threads):
                        print(f"warning: lowbit reports {lb['reported_threads']} threads, "
                              f"asked for {a.threads}", file=sys.stderr)
                except RuntimeError as e:
                    row["lowbit_error"] = str(e)
                    row["ratio"] = None
                    print(f"lowbit failed on {name} batch {batch}:\n{e}", file=sys.stderr)
                rows.append(row)

    def fmt(v, spec):
        return format(v, spec) if isinstance(v, (int, float)) else "FAILED"

    header = f"{'model':<14} {'batch':>5} {'lowbit ms/sample':>17} {'ORT ms/sample':>14} " \
             f"{'ratio':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['model']:<14} {r['batch']:>5} {fmt(r.get('lowbit_ms_per_sample'), '17.3f')} "
              f"{r['ort_ms_per_sample']:>14.3f} {fmt(r['ratio'], '6.2f')}")

    target_rows = [r for r in rows if r["batch"] == TARGET_BATCH]
    met = bool(target_rows) and all(r["ratio"] is not None and r["ratio"] <= TARGET_RATIO
                                    for r in target_rows)
    for r in target_rows:
        verdict = ("met" if r["ratio"] is not None and r["ratio"] <= TARGET_RATIO else "MISSED")
        print(f"target lowbit/ORT <= {TARGET_RATIO} at batch {TARGET_BATCH}, {r['model']}: "
              f"{verdict}")
    if not target_rows:
        print(f"target not evaluated: no batch {TARGET_BATCH} measured")

    result = {
        "benchmark": "fp32",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "lowbit": str(binary),
        "environment": R.describe_env(a.threads),
        "repeats": a.repeats,
        "target": {"ratio_max": TARGET_RATIO, "batch": TARGET_BATCH, "met": met},
        "rows": rows,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.out}")
    if a.check and not met:
        sys.exit(1)


if __name__ == "__main__":
    main()
