"""`lowbit run --integer` against ONNX Runtime's integer execution on every shared model (issue 22).

Each model is quantized by `lowbit ptq --effort fast` (W8A8, per tensor and per channel) and its
file run three ways on the same held-out inputs: by ONNX Runtime (its QDQ fusions: QLinearConv,
QLinearMatMul, ...), by `lowbit run --integer` (int32 accumulators, fixed-point requantization per
channel) and by `lowbit run` (the float simulation). Reported per file: the layers run in
integers, and for each of lowbit's two runs its distance from ONNX Runtime in steps of the output
quantizer (share within one step, largest), top-1 agreement, or, where the output has no
quantizer (MiniLM's pooled embedding), the largest difference and the cosine.

Inputs: Fashion-MNIST test images (fm_*), seeded random inputs (resnet18, resnet50 with seeded
weights), held-out photo crops (efficientnet_lite2), held-out sentences (MiniLM).
Writes benchmarks/results/integer_run.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "golden"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import ort_reference as R  # noqa: E402

MODELS = ["fm_resnet20", "fm_mobilenetv2", "fm_inception", "resnet18", "resnet50", "efficientnet_lite2", "minilm_l6_embed"]


def data(name: str, count: int) -> tuple[dict, dict]:
    """(calibration feeds, held-out feeds) for a model."""
    if name.startswith("fm_"):
        c, _ = R.load_fashion_mnist("train", limit=256)
        x, _ = R.load_fashion_mnist("test", limit=count)
        return {"input": c}, {"input": x}
    if name in ("resnet18", "resnet50"):
        feeds = R.random_feeds(R.model_path(name, seed=0), batch=16 + count, seed=3)
        return {"input": feeds["input"][:16]}, {"input": feeds["input"][16:]}
    if name == "efficientnet_lite2":
        import photos
        c, h = photos.photo_split(260, seed=0)
        key = onnx.load(str(R.model_path(name))).graph.input[0].name
        return {key: c[:40].astype(np.float32)}, {key: h[:count].astype(np.float32)}
    d = R.minilm_data_dir()
    load = lambda split, n: {k: np.load(d / f"{split}_{k}.npy")[:n] for k in ["input_ids", "attention_mask"]}  # noqa: E731
    return load("calib", 128), load("eval", count)


def spec(feeds: dict, folder: Path, prefix: str) -> str:
    parts = []
    for k, v in feeds.items():
        np.save(folder / f"{prefix}_{k}.npy", v)
        parts.append(f"{k}={folder / f'{prefix}_{k}.npy'}")
    return "npy:" + (",".join(parts) if len(parts) > 1 else str(folder / f"{prefix}_{list(feeds)[0]}.npy"))


def compare(ours: np.ndarray, theirs: np.ndarray, scale: float | None) -> dict:
    d = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    flat = lambda a: a.reshape(len(a), -1)  # noqa: E731
    out = {"top1_agreement": float((flat(ours).argmax(1) == flat(theirs).argmax(1)).mean()),
           "max_abs": float(d.max()),
           "cosine": float(R.row_cosine(flat(ours).astype(np.float64), flat(theirs).astype(np.float64)).mean())}
    if scale:
        steps = np.rint(d / scale)
        out |= {"within_one_step": float((steps <= 1).mean()), "max_steps": float(steps.max())}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    ap.add_argument("--count", type=int, default=64, help="held-out inputs per model")
    ap.add_argument("--under-load", default="")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "integer_run.json")
    ap.add_argument("--table", action="store_true")
    a = ap.parse_args()
    if a.table:
        return print_table(json.loads(a.json.read_text()))
    result = {"benchmark": "bench_integer_run.py (issue 22: lowbit run --integer against ONNX Runtime)",
              "commit": R.git_checkout(R.lowbit_bin()), "binary_sha256": R._sha256(R.lowbit_bin()),
              "env": R.describe_env(), "loadavg": os.getloadavg(), "under_load": a.under_load, "count": a.count,
              "rows": []}
    with tempfile.TemporaryDirectory(prefix="bench-integer-") as tmp:
        work = Path(tmp)
        binary = work / "lowbit"
        shutil.copy2(R.lowbit_bin(), binary)
        for name in a.models:
            model = R.model_path(name, seed=0) if name in ("resnet18", "resnet50") else R.models_dir() / f"{name}.onnx"
            calib, held = data(name, a.count)
            calib_spec, held_spec = spec(calib, work, f"{name}_calib"), spec(held, work, f"{name}_held")
            for setting, extra in [("W8A8 PT", []), ("W8A8 PC", ["--per-channel"])]:
                out = work / f"{name}_{len(extra)}.onnx"
                subprocess.run([str(binary), "ptq", str(model), "--calib", calib_spec, "-o", str(out), "--effort", "fast",
                                "--quiet", *extra], check=True, capture_output=True)
                output = onnx.load(str(out)).graph.output[0].name
                theirs = R.run_ort(out, held)[output]
                q = R.qdq_output_quantizer(out, output)
                scale = float(np.asarray(q["scale"]).ravel()[0]) if q else None
                row = {"model": name, "setting": setting, "output_scale": scale}
                for mode, flags in [("integer", ["--integer"]), ("simulation", [])]:
                    saved, js = work / "o.npy", work / "r.json"
                    subprocess.run([str(binary), "run", str(out), "--data", held_spec, "--save-outputs", str(saved),
                                    "--json", str(js), "--quiet", *flags], check=True, capture_output=True)
                    row[mode] = compare(np.load(saved), theirs, scale)
                    if flags:
                        row["integer_layers"] = json.loads(js.read_text()).get("integer_layers")
                result["rows"].append(row)
                print(json.dumps(row), flush=True)
                a.json.parent.mkdir(parents=True, exist_ok=True)
                a.json.write_text(json.dumps(result, indent=1))
    return print_table(result)


def print_table(result: dict) -> int:
    print(f"commit {result['commit']['head'][:12]}{' (dirty)' if result['commit']['dirty'] else ''}; "
          f"{result['count']} held-out inputs per model; under load: {result['under_load'] or 'no'}")
    print("\n| model | setting | integer layers | --integer vs ORT: within 1 step / max steps / top-1 | simulation vs ORT |")
    print("| --- | --- | --- | --- | --- |")
    for r in result["rows"]:
        def cell(c):
            if "within_one_step" in c:
                return f"{100 * c['within_one_step']:.2f}% / {c['max_steps']:.0f} / {100 * c['top1_agreement']:.1f}%"
            return f"max |diff| {c['max_abs']:.3g}, cosine {c['cosine']:.6f}"
        print(f"| {r['model']} | {r['setting']} | {r['integer_layers']} | {cell(r['integer'])} | {cell(r['simulation'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
