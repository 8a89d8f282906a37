#!/usr/bin/env python3
"""One lowbit setting on EfficientNet-Lite2 and one photo split, judged as bench_imagenet.py
judges its files: what a pipeline option would change before it becomes a default.

    python3 benchmarks/imagenet_ablation.py NAME --seed 0 -- --per-channel --adaround-iterations 150

Calibrates on the split's calibration half (centre crops, 80 inputs), runs the written file in
ONNX Runtime on the held-out half as TenCrop views (800 inputs) and compares it with the float
model there (agreement, KL, logit SQNR: `bench_imagenet.fidelity`). Appends one row, with the
commit, the lowbit arguments, the seconds per step and whether other jobs shared the machine
(`--under-load`, stated by the caller), to `benchmarks/results/imagenet_ablations.json`.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_imagenet as B  # noqa: E402
from photos import photo_split  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="a label for the row")
    ap.add_argument("--seed", type=int, default=0, help="photo split")
    ap.add_argument("--size", type=int, default=260)
    ap.add_argument("--model", default=str(B.R.models_dir() / "efficientnet_lite2.onnx"))
    ap.add_argument("--under-load", default="", help="what else ran on the machine meanwhile")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "imagenet_ablations.json")
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    a = ap.parse_args(argv[:cut])
    extra = argv[cut + 1:]  # after --: arguments of lowbit ptq
    model = Path(a.model)
    calib, _ = photo_split(a.size, seed=a.seed, crops=1)
    _, held = photo_split(a.size, seed=a.seed, crops=10)
    reference = B.logits(model, held)
    with tempfile.TemporaryDirectory() as tmp:
        calib_path, out = Path(tmp) / "calib.npy", Path(tmp) / "q.onnx"
        np.save(calib_path, calib)
        run = B.run_lowbit(model, calib_path, out, extra)
        if not run["ok"]:
            print(run["reason"], file=sys.stderr)
            return 1
        row = {"name": a.name, "seed": a.seed, "lowbit_args": extra, **B.commit(),
               "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "under_load": a.under_load,
               "seconds": run["seconds"], "steps": run["steps"],
               "calibration_inputs": len(calib), "held_out_inputs": len(held),
               **B.fidelity(reference, B.logits(out, held))}
    print(json.dumps({k: row[k] for k in ("name", "seed", "agreement", "kl", "sqnr_db", "seconds")}))
    a.json.parent.mkdir(parents=True, exist_ok=True)
    with open(a.json.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = json.loads(a.json.read_text())["rows"] if a.json.exists() else []
        a.json.write_text(json.dumps({"benchmark": "imagenet ablations", "model": model.name, "rows": rows + [row]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
