#!/usr/bin/env python3
"""Cross-layer equalization ablation (the white paper's table 3 layout) on the demo models.

For each model, per-tensor weight bit width and weight range setting (`--weight-ranges`: min-max,
as in the paper's table 3, and MSE, lowbit's default), `lowbit ptq` writes four files on the same
1,024 calibration images, and ONNX Runtime measures their top-1 on the Fashion-MNIST test set:

  - baseline:        range setting only (`--range-setting-only`)
  - + CLE:           cross-layer equalization, nothing else (`--no-adaround --no-bias-absorption
                     --bias-correction none`)
  - + CLE + absorb:  equalization and high-bias absorption
  - full pipeline:   lowbit's default (CLE, absorption, AdaRound)

The table shows FP32 next to them.

    python3 benchmarks/bench_cle.py [--models fm_mobilenetv2] [--bits 8 6 4]
                                    [--weight-ranges min-max mse] [--test-limit N]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "golden"))
import ort_reference as R  # noqa: E402

VARIANTS = {
    "baseline": ["--range-setting-only"],
    "+ CLE": ["--no-adaround", "--no-bias-absorption", "--bias-correction", "none"],
    "+ CLE + absorb": ["--no-adaround", "--bias-correction", "none"],
    "full pipeline": [],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["fm_mobilenetv2"])
    ap.add_argument("--bits", nargs="+", type=int, default=[8, 6, 4])
    ap.add_argument("--weight-ranges", nargs="+", default=["min-max", "mse"], choices=["min-max", "mse"])
    ap.add_argument("--calib-size", type=int, default=1024)
    ap.add_argument("--test-limit", type=int, default=10000)
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "cle.json"))
    args = ap.parse_args()

    lowbit = R.lowbit_bin()
    x, labels = R.load_fashion_mnist("test", args.test_limit)
    work = ROOT / "out" / "bench_cle"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models:
        model = ROOT / "assets" / "models" / f"{name}.onnx"
        fp32, _ = R.ort_top1(model, x, labels)
        for bits, wrange in [(b, w) for b in args.bits for w in args.weight_ranges]:
            row = {"model": name, "weights": f"PT W{bits}A8", "weight ranges": wrange, "fp32": fp32}
            for variant, flags in VARIANTS.items():
                flags = [*flags, "--w-range", wrange]
                out = work / f"{name}_w{bits}_{wrange}_{variant.replace(' ', '').replace('+', '_')}.onnx"
                report = out.with_suffix(".json")
                t = time.perf_counter()
                subprocess.run([str(lowbit), "ptq", str(model), "--calib", "fashion-mnist:train", "--calib-size",
                                str(args.calib_size), "--w-bits", str(bits), "-o", str(out), "--json", str(report),
                                "--quiet", *flags], check=True)
                seconds = time.perf_counter() - t
                top1, _ = R.ort_top1(out, x, labels)
                row[variant] = top1
                row[variant + " seconds"] = seconds
            rows.append(row)
            print(f"{name} {row['weights']} {wrange}: FP32 {fp32:.2f} | " +
                  " | ".join(f"{v} {row[v]:.2f}" for v in VARIANTS), flush=True)
    header = ["model", "weights", "weight ranges", "FP32", *VARIANTS]
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print(f"| {r['model']} | {r['weights']} | {r['weight ranges']} | {r['fp32']:.2f} | " + " | ".join(f"{r[v]:.2f}" for v in VARIANTS) + " |")
    print(f"\ntop-1 % in ONNX Runtime on fashion-mnist:test[:{args.test_limit}], {args.calib_size} calibration images")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
