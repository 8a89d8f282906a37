#!/usr/bin/env python3
"""A second opinion on small accuracy gaps: every quantized file that `bench_ptq.py --keep DIR`
kept, measured on the test set and on a held-out set of training images.

A gap of 0.05 points on 10,000 test images is 5 images. The last `--holdout` (10,000) training
images were never used for calibration (which takes the first 1,024) and give an independent
second estimate of the same files' accuracy: a real difference between two quantizers shows on
both sets, chance does not. Per file: top-1, agreement with the float model's argmax (%), and
the SQNR of the logits against the float model's (dB; lowbit's cross-entropy range for the
logits clips large ones on purpose, so its SQNR is lower while its argmax agrees more), the mean
KL divergence of the quantized model's softmax from the float model's (`KL(p_float || p_quant)`
per image, in units of 1e-3: a measure of fidelity that uses every image, not only those near a
decision boundary, so it separates two quantizers long before their top-1 does), and for
every peer file the images only lowbit's file of the same setting gets right, those only the
peer gets right, and the exact McNemar p-value of that split (`bench_ptq.mcnemar`).

    python3 benchmarks/bench_ptq.py --keep out/ptq-files ...
    python3 benchmarks/holdout.py out/ptq-files [--models fm_inception] [--match w4a8]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "golden"))
import ort_reference as R  # noqa: E402
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_ptq import mcnemar  # noqa: E402


def logits(path: Path, x: np.ndarray) -> np.ndarray:
    sess = R.ort_session(path)
    out = R.run_ort(sess, {sess.get_inputs()[0].name: x}, batch_size=1000)
    return out[sess.get_outputs()[0].name]


def kl_divergence(reference: np.ndarray, other: np.ndarray) -> float:
    """Mean over images of KL(softmax(reference) || softmax(other))."""
    def log_softmax(z: np.ndarray) -> np.ndarray:
        z = z.astype(np.float64) - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    lp, lq = log_softmax(reference), log_softmax(other)
    return float((np.exp(lp) * (lp - lq)).sum(axis=1).mean())


def sqnr(reference: np.ndarray, other: np.ndarray) -> float:
    return float(10 * np.log10((reference ** 2).sum() / max(((reference - other) ** 2).sum(), 1e-30)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="a bench_ptq.py --keep folder (one subfolder per model)")
    ap.add_argument("--models", nargs="+", default=["fm_resnet20", "fm_mobilenetv2", "fm_inception"])
    ap.add_argument("--match", default="", help="only files whose name contains this")
    ap.add_argument("--holdout", type=int, default=10000)
    ap.add_argument("--json", type=Path, help="also write every figure here, with the commit (e.g. "
                    "benchmarks/results/ptq_holdout.json)")
    a = ap.parse_args()
    rows = []
    train_x, train_y = R.load_fashion_mnist("train")
    sets = {"held-out": (train_x[-a.holdout:], train_y[-a.holdout:]),
            "test": R.load_fashion_mnist("test")}
    print(f"{'model':<15} {'file':<28} " + " ".join(
        f"{name + ' top-1':>14} {'agree':>6} {'SQNR dB':>7} {'KL e-3':>6}" for name in sets))
    for model in a.models:
        files = sorted((a.folder / model).glob(f"*{a.match}*.onnx" if a.match else "*.onnx"),
                       key=lambda f: (not f.stem.startswith("lowbit"), f.stem))
        if not files:
            continue
        float_model = ROOT / "assets" / "models" / f"{model}.onnx"
        reference = {name: logits(float_model, x) for name, (x, _) in sets.items()}
        right: dict = {}  # (file stem, set) -> per image, argmax right
        for path in [float_model, *files]:
            cells = []
            setting = "_".join(path.stem.split("_")[-2:])
            label = "FP32" if path == float_model else path.stem
            for name, (x, y) in sets.items():
                q = reference[name] if path == float_model else logits(path, x)
                right[(path.stem, name)] = q.argmax(1) == y
                row = {"model": model, "file": label, "set": name,
                       "top1": float(100 * (q.argmax(1) == y).mean()),
                       "agreement": float(100 * (q.argmax(1) == reference[name].argmax(1)).mean()),
                       "sqnr_db": None if path == float_model else sqnr(reference[name], q),
                       "kl_e3": 1000 * kl_divergence(reference[name], q)}
                sqnr_text = float("inf") if row["sqnr_db"] is None else row["sqnr_db"]
                cells.append(f"{row['top1']:>14.2f} {row['agreement']:>6.2f} {sqnr_text:>7.2f} {row['kl_e3']:>6.3f}")
                own = right.get((f"lowbit_{setting}", name))
                if own is not None and not path.stem.startswith("lowbit"):
                    only_lb, only_peer, p = mcnemar(own, right[(path.stem, name)])
                    cells[-1] += f" (only lowbit {only_lb}, only peer {only_peer}, p = {p:.2f})"
                    row |= {"only_lowbit": int(only_lb), "only_peer": int(only_peer), "mcnemar_p": float(p)}
                rows.append(row)
            print(f"{model:<15} {label:<28} " + " ".join(cells), flush=True)
    if a.json:
        import json
        import time
        a.json.write_text(json.dumps({
            "benchmark": "holdout", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "commit": R.git_checkout()["head"], "folder": str(a.folder), "holdout_images": a.holdout,
            "note": "the files are those bench_ptq.py --keep wrote; its results file has the commit of each lowbit cell",
            "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
