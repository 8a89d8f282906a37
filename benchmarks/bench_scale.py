#!/usr/bin/env python3
"""Scale: seconds per step, cores busy and peak resident memory of `lowbit ptq` on ImageNet-size
CNNs with 256 to 4,096 calibration images, next to ONNX Runtime's quantize_static (MinMax,
Entropy) on the same files and data in the same run.

    python3 benchmarks/bench_scale.py [--models resnet18 mobilenet_v2 resnet50 efficientnet_lite2]
        [--images 256 1024 4096] [--settings w8a8 w4a8] [--tools lowbit ort-minmax ort-entropy]
        [--lowbit-args="--effort fast"] [--timeout 3600] [--json F] [--under-load "..."]

Models: the torchvision graphs of ../shared/models with seeded weights (`fill_weights.py`, seed
0; 224x224) and EfficientNet-Lite2 with its real weights (260x260). Data: seeded random crops of
the shared photos (`photos.random_crops`: 25-100% of a photo's area, mirrored half the time,
ImageNet normalization), one `.npy` per size and count, cached beside the filled models.

Settings are per-channel weights: w8a8 (`--per-channel`) and w4a8 (`--per-channel --w-bits 4`),
lowbit's default pipeline unless `--lowbit-args` adds options. ONNX Runtime runs
`benchmarks/peers/ort_ptq.py` (quant_pre_process, then quantize_static in QDQ format, batches of
64 read from a memory map of the same `.npy`), 4-bit weights as QInt4. Every command runs under
`/usr/bin/time`: wall seconds, processor seconds (user + system) and peak resident memory; a
command that fails or passes `--timeout` is recorded as failed with its reason. lowbit's JSON
report adds each step's seconds, processor seconds and peak.

The table prints each lowbit run's time and memory as ratios to ONNX Runtime's MinMax run on the
same model, images and weight width.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "golden"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import ort_reference as R  # noqa: E402
import photos  # noqa: E402

SIZES = {"resnet18": 224, "resnet50": 224, "mobilenet_v2": 224, "efficientnet_lite2": 260}
SETTINGS = {"w8a8": ["--per-channel"], "w4a8": ["--per-channel", "--w-bits", "4"]}


def model_file(name: str) -> Path:
    if name == "efficientnet_lite2":
        return R.models_dir() / "efficientnet_lite2.onnx"
    return R.filled_model(name, seed=0)


def calibration_file(count: int, size: int, seed: int) -> Path:
    return photos.random_crops(count, size, seed, R.cache_dir() / f"crops_{size}_{count}_seed{seed}.npy")


def timed(command: list[str], timeout: float) -> dict:
    """Runs `command` under /usr/bin/time: wall and processor seconds, peak MiB, ok, reason."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as t:
        start = time.perf_counter()
        try:
            proc = subprocess.run(["/usr/bin/time", "-o", t.name, "-f", "%e %U %S %M"] + command,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"ok": False, "reason": f"timed out after {timeout:.0f} s", "seconds": timeout}
        wall = time.perf_counter() - start
        lines = t.read().strip().splitlines() or [""]
        fields = lines[-1].split()
    row = {"ok": proc.returncode == 0, "seconds": wall}
    if len(fields) == 4:
        row.update(seconds=float(fields[0]), processor_seconds=float(fields[1]) + float(fields[2]),
                   peak_mib=int(fields[3]) / 1024)
        row["cores"] = row["processor_seconds"] / max(row["seconds"], 1e-9)
    if proc.returncode != 0:
        # A process the kernel killed (out of memory: signal 9) leaves no message of its own.
        said = (proc.stderr.strip() or proc.stdout.strip())[-600:]
        row["reason"] = said or " ".join(lines[:-1] + [f"(exit status {proc.returncode})"])
    return row


def run_lowbit(binary: Path, model: Path, calib: Path, setting: str, extra: list[str], out: Path,
               timeout: float) -> dict:
    report = out.with_suffix(".json")
    command = [str(binary), "ptq", str(model), "--calib", f"npy:{calib}", "-o", str(out), "--json", str(report)]
    row = timed(command + SETTINGS[setting] + extra, timeout)
    if row["ok"] and report.exists():
        r = json.loads(report.read_text())
        row["steps"] = [{k: s.get(k) for k in ("step", "seconds", "processor_seconds", "peak_bytes")}
                        for s in r.get("steps", [])]
    return row


def run_ort(model: Path, calib: Path, setting: str, method: str, out: Path, timeout: float) -> dict:
    command = [sys.executable, str(ROOT / "benchmarks" / "peers" / "ort_ptq.py"), str(model), str(calib),
               str(out), "--method", method, "--per-channel", "--w-bits", "4" if setting == "w4a8" else "8",
               "--mmap"]
    row = timed(command, timeout)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v2", "resnet50", "efficientnet_lite2"],
                    choices=sorted(SIZES))
    ap.add_argument("--images", nargs="+", type=int, default=[256, 1024, 4096])
    ap.add_argument("--settings", nargs="+", default=["w8a8", "w4a8"], choices=sorted(SETTINGS))
    ap.add_argument("--tools", nargs="+", default=["lowbit", "ort-minmax", "ort-entropy"],
                    choices=["lowbit", "ort-minmax", "ort-entropy"])
    ap.add_argument("--lowbit", type=Path, default=None, help="the lowbit binary (default: the release build)")
    ap.add_argument("--lowbit-args", default="", help="extra options for lowbit ptq")
    ap.add_argument("--seed", type=int, default=0, help="seed of the calibration crops")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--under-load", default="", help="what else ran on the machine meanwhile")
    ap.add_argument("--table", type=Path, default=None, help="only print the markdown table of this results file")
    a = ap.parse_args(argv)
    if a.table:
        print(markdown_table(json.loads(a.table.read_text())["rows"]))
        return 0
    binary = a.lowbit or R.lowbit_bin()
    extra = a.lowbit_args.split()
    result = {"benchmark": "scale", "checkout": R.git_checkout(binary), "ort": None,
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "under_load": a.under_load,
              "lowbit_args": a.lowbit_args, "seed": a.seed, "rows": []}
    try:
        import onnxruntime
        result["ort"] = onnxruntime.__version__
    except ImportError:
        pass

    def save():
        if a.json:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(result, indent=1) + "\n")

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        # Every model at the smallest count first, so a run cut short still has a whole column.
        for count in a.images:
            for name in a.models:
                model = model_file(name)
                calib = calibration_file(count, SIZES[name], a.seed)
                for setting in a.settings:
                    for tool in a.tools:
                        out = Path(tmp) / f"{name}_{count}_{setting}_{tool}.onnx"
                        if tool == "lowbit":
                            row = run_lowbit(binary, model, calib, setting, extra, out, a.timeout)
                        else:
                            row = run_ort(model, calib, setting, tool.split("-")[1], out, a.timeout)
                        row.update(model=name, images=count, size=SIZES[name], setting=setting, tool=tool)
                        result["rows"].append(row)
                        save()
                        for f in Path(tmp).glob(f"{name}_{count}_{setting}_{tool}*"):
                            f.unlink()
                        print(f"{name:18s} {count:5d} {setting} {tool:11s} "
                              + (f"{row['seconds']:8.1f} s  {row.get('cores', 0):.2f} cores  {row.get('peak_mib', 0):7.0f} MiB"
                                 if row["ok"] else f"failed: {row.get('reason', '')[:120]}"), flush=True)
    print_table(result["rows"])
    save()
    return 0


def markdown_table(rows: list[dict]) -> str:
    """One line per model, images and setting: each tool's seconds, cores and peak GiB, and
    lowbit's time and memory over ONNX Runtime MinMax's."""
    def cell(r):
        if r is None:
            return "-"
        if not r["ok"]:
            why = r.get("reason", "")
            return "killed (out of memory)" if "signal 9" in why else ("timed out" if "timed out" in why else "failed")
        return f"{r['seconds']:.0f} s, {r.get('cores', 0):.1f} cores, {r.get('peak_mib', 0) / 1024:.1f} GiB"
    keys = []
    for r in rows:
        k = (r["model"], r["images"], r["setting"])
        if k not in keys:
            keys.append(k)
    by = {(r["model"], r["images"], r["setting"], r["tool"]): r for r in rows}
    out = ["| model | images | setting | lowbit | ORT MinMax | ORT Entropy | lowbit / MinMax time, memory |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for m, n, st in keys:
        lb, mm, en = (by.get((m, n, st, t)) for t in ("lowbit", "ort-minmax", "ort-entropy"))
        ratio = (f"{lb['seconds'] / mm['seconds']:.1f}x, {lb['peak_mib'] / mm['peak_mib']:.2f}x"
                 if lb and mm and lb["ok"] and mm["ok"] else "-")
        out.append(f"| {m} | {n} | {st.upper()} | {cell(lb)} | {cell(mm)} | {cell(en)} | {ratio} |")
    return "\n".join(out)


def print_table(rows: list[dict]) -> None:
    """lowbit's time and peak memory as ratios to ONNX Runtime's MinMax run."""
    peer = {(r["model"], r["images"], r["setting"]): r for r in rows if r["tool"] == "ort-minmax" and r["ok"]}
    print("\nmodel               images setting  lowbit s  cores  MiB     x ORT MinMax time  x memory")
    for r in rows:
        if r["tool"] != "lowbit":
            continue
        p = peer.get((r["model"], r["images"], r["setting"]))
        if not r["ok"]:
            print(f"{r['model']:18s} {r['images']:6d} {r['setting']:7s}  failed")
            continue
        ratio = f"{r['seconds'] / p['seconds']:17.2f}  {r['peak_mib'] / p['peak_mib']:8.2f}" if p else "   (no peer run)"
        print(f"{r['model']:18s} {r['images']:6d} {r['setting']:7s} {r['seconds']:8.1f} {r.get('cores', 0):6.2f} "
              f"{r.get('peak_mib', 0):6.0f} {ratio}")


if __name__ == "__main__":
    raise SystemExit(main())
