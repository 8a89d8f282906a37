#!/usr/bin/env python3
"""Quantization-aware training: the white paper's table-10 layout for lowbit qat.

    python3 benchmarks/bench_qat.py [--models fm_resnet20 ...]
        [--settings pt_w8a8 pt_w4a8 pt_w4a4 pc_w8a8 pc_w4a8 pc_w4a4]
        [--train-samples 60000] [--epochs 1] [--test-limit 10000] [--check] [-- extra qat args]

For each Fashion-MNIST model: FP32 | per-tensor W8A8, W4A8, W4A4 | per-channel W8A8, W4A8, W4A4
after `lowbit qat` (its default start, lowbit ptq's pipeline on 1,024 training images, then
training weights and quantizers on the first --train-samples training images for --epochs epochs
with qat's default optimizer and schedule; `-- --start range-setting` starts from range setting
only, as in the paper's fig. 11). Every accuracy is top-1 of the written QDQ file run in ONNX Runtime
(CPU) on the first --test-limit test images; the seconds are the wall clock of one `lowbit qat`
run (PTQ, training, export). The starting point's top-1 (lowbit's simulation on the first 2,000
test images) is in the JSON. Results go to
benchmarks/results/qat.json after every run, so an interrupted benchmark keeps what it measured.

--check: exit 1 when a target is missed: W4A8 at or above FP32 - 0.3 (both granularities, every
model measured) and W4A4 within 1.0 point of FP32 on fm_resnet20.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[0] / "tests" / "golden"))

import ort_reference as R  # noqa: E402

REPO = HERE.parent
MODELS_DIR = REPO / "assets" / "models"
MODELS = ("fm_resnet20", "fm_mobilenetv2", "fm_inception")
SETTINGS = {  # name -> (weight bits, activation bits, per-channel), table column order
    "pt_w8a8": (8, 8, False), "pt_w4a8": (4, 8, False), "pt_w4a4": (4, 4, False),
    "pc_w8a8": (8, 8, True), "pc_w4a8": (4, 8, True), "pc_w4a4": (4, 4, True),
}
COLUMN = {k: ("PT " if not v[2] else "PC ") + f"W{v[0]}A{v[1]}" for k, v in SETTINGS.items()}
TARGET_W4A8_DROP = 0.3
TARGET_W4A4_DROP = 1.0  # fm_resnet20


def log(msg: str):
    print(msg, file=sys.stderr, flush=True)


def run_qat(binary, model, out, setting, args, extra) -> dict:
    w, a, pc = SETTINGS[setting]
    report = out.with_suffix(".json")
    cmd = ["qat", model, "--train", f"fashion-mnist:train:{args.train_samples}",
           "--eval", "fashion-mnist:test:2000", "--epochs", str(args.epochs),
           "--w-bits", str(w), "--a-bits", str(a), "-o", out, "--json", report, "--quiet"]
    if pc:
        cmd.append("--per-channel")
    cmd += extra
    t = time.perf_counter()
    proc = R.run_lowbit(cmd, env={"LOWBIT_THREADS": str(args.threads)}, binary=binary, timeout=6 * 3600)
    res = {"command": " ".join(shlex.quote(str(s)) for s in [binary, *cmd]),
           "seconds": time.perf_counter() - t}
    if proc.returncode != 0 or not out.is_file():
        res.update(ok=False, reason=R.describe_proc(proc, limit=1200))
        return res
    rep = json.loads(report.read_text())
    res.update(ok=True, start_top1_sim=rep.get("start_top1"), epochs=rep.get("epochs"),
               training_seconds=rep.get("training_seconds"), config=rep.get("config"))
    return res


def render(rows, settings) -> str:
    settings = [s for s in SETTINGS if s in settings]  # table-10 column order
    head = ["model", "FP32"] + [COLUMN[s] for s in settings] + ["s/run"]
    widths = [15, 6] + [8] * len(settings) + [7]
    lines = [" ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(head, widths)))]
    lines.append("-" * len(lines[0]))
    for r in rows:
        cells = [r["model"].ljust(widths[0]), f"{r['fp32']:.2f}".rjust(widths[1])]
        secs = []
        for s, w in zip(settings, widths[2:]):
            c = r["cells"].get(s)
            cells.append(("-" if c is None else f"{c['top1']:.2f}" if c.get("top1") is not None else "FAILED").rjust(w))
            if c and c.get("ok"):
                secs.append(c["seconds"])
        cells.append((f"{sum(secs) / len(secs):.0f}" if secs else "-").rjust(widths[-1]))
        lines.append(" ".join(cells))
    return "\n".join(lines)


def check(rows) -> list[str]:
    missed = []
    for r in rows:
        for s, c in r["cells"].items():
            top1 = c.get("top1")
            if top1 is None:
                missed.append(f"{r['model']} {COLUMN[s]}: no result")
            elif "w4a8" in s and top1 < r["fp32"] - TARGET_W4A8_DROP:
                missed.append(f"{r['model']} {COLUMN[s]}: {top1:.2f} < FP32 {r['fp32']:.2f} - {TARGET_W4A8_DROP}")
            elif "w4a4" in s and r["model"] == "fm_resnet20" and top1 < r["fp32"] - TARGET_W4A4_DROP:
                missed.append(f"{r['model']} {COLUMN[s]}: {top1:.2f} < FP32 {r['fp32']:.2f} - {TARGET_W4A4_DROP}")
    return missed


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--train-samples", type=int, default=60000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--test-limit", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--lowbit", type=Path, default=None, help="the lowbit binary (default: release build)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "qat.json")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--merge", type=Path, default=None,
                    help="keep this earlier results file's rows of the models not measured now (each row has its commit)")
    args = ap.parse_args(argv)
    binary = args.lowbit.resolve() if args.lowbit else R.lowbit_bin()
    x, y = R.load_fashion_mnist("test", limit=args.test_limit)
    result = {"benchmark": "qat", "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "env": R.describe_env(args.threads), "train_samples": args.train_samples, "epochs": args.epochs,
              "test_images": len(x), "extra_args": extra, "rows": []}
    rows = result["rows"]
    if args.merge and args.merge.exists():
        rows += [r for r in json.loads(args.merge.read_text())["rows"] if r["model"] not in args.models]
    checkout = R.git_checkout()
    with tempfile.TemporaryDirectory(prefix="bench_qat_") as tmp:
        for name in args.models:
            model = MODELS_DIR / f"{name}.onnx"
            fp32 = R.ort_top1(R.ort_session(model, threads=args.threads), x, y, batch_size=500)[0]
            row = {"model": name, "fp32": fp32, "commit": checkout,
                   "date": datetime.datetime.now().isoformat(timespec="seconds"), "cells": {}}
            rows.append(row)
            for setting in args.settings:
                out = Path(tmp) / f"{name}_{setting}.onnx"
                log(f"{name} {COLUMN[setting]}: lowbit qat ...")
                cell = run_qat(binary, model, out, setting, args, extra)
                if cell["ok"]:
                    cell["top1"] = R.ort_top1(R.ort_session(out, threads=args.threads), x, y, batch_size=500)[0]
                    log(f"  {cell['top1']:.2f} (FP32 {fp32:.2f}), {cell['seconds']:.0f} s")
                else:
                    cell["top1"] = None
                    log(f"  FAILED: {cell['reason'][:400]}")
                row["cells"][setting] = cell
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"QAT (table-10 layout): top-1 % of the written files in ONNX Runtime, {len(x)} test images; "
          f"{args.epochs} epoch(s) on {args.train_samples} training images; s/run = one lowbit qat run")
    print(render(rows, args.settings))
    missed = check(rows)
    for m in missed:
        print(f"target missed: {m}")
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
