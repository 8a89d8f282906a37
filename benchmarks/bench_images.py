#!/usr/bin/env python3
"""Images from a folder: lowbit's decoding and preprocessing against PIL + numpy (torchvision's
evaluation transform on PIL images, spelled out as `benchmarks/photos.py` does) — pixel parity,
images per second at the same thread count, and peak memory of calibrating from 500 and from
5,000 images.

    python3 benchmarks/bench_images.py [--images 1000] [--repeats 3] [--memory-images 500 5000 10000]
        [--json benchmarks/results/images.json] [--under-load "..."]

- Parity: every photo of ../shared/data/images through `Resize(256) -> CenterCrop(224)` (lowbit's
  `--preprocess imagenet` for a 224x224 model) by lowbit and by PIL; per pixel, the difference
  before normalization in levels of 1/255: the maximum and the fraction above one level.
- Speed: a folder of `--images` JPEGs at ImageNet's typical size (each shared photo resized by
  PIL so its long side is 500, quality 90, cycled), decoded and preprocessed to float32
  [3, 224, 224] rows: PIL + numpy in one process and in a pool of two (as a two-worker
  DataLoader), lowbit `run` on a GlobalAveragePool model with LOWBIT_THREADS=1 and 2 (the whole
  command: start, listing, decoding, preprocessing, batches of 64). Median of `--repeats` runs.
- Memory: `lowbit ptq --range-setting-only` of a small conv net (conv 3->16 stride 4, ReLU,
  global pool, Gemm to 10) with every image of a folder of N links to those JPEGs (`--calib-size
  N`): peak resident memory, 500 against 5,000 and 10,000.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "golden"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import ort_reference as R  # noqa: E402
import photos  # noqa: E402
from bench_scale import timed  # noqa: E402


def identity_model(path: Path, size: int) -> Path:
    import onnx
    from onnx import TensorProto, helper
    dims = ["N", 3, size, size]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, dims)
    g = helper.make_graph([helper.make_node("Identity", ["input"], ["out"])], "g", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def pooling_model(path: Path, size: int) -> Path:
    """GlobalAveragePool of a [N, 3, size, size] input: the model costs next to nothing and its
    outputs are 3 numbers a row, so `lowbit run` times the decoding and preprocessing."""
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3, 1, 1])
    g = helper.make_graph([helper.make_node("GlobalAveragePool", ["input"], ["out"])], "g", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def small_convnet(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((16, 3, 4, 4)) * 0.2).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(16, np.float32), "b")
    fw = numpy_helper.from_array((rng.standard_normal((10, 16)) * 0.3).astype(np.float32), "fw")
    fb = numpy_helper.from_array(np.zeros(10, np.float32), "fb")
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["c"], strides=[4, 4]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], [w, b, fw, fb])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def pil_row(path: str) -> np.ndarray:
    return photos.preprocess(Path(path), 224)[0]


def imagenet_folder(folder: Path, count: int) -> Path:
    """`count` JPEGs, the shared photos resized so the long side is 500 (quality 90), cycled."""
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    files = photos.photo_files()
    made = {}
    for i in range(count):
        src = files[i % len(files)]
        if src not in made:
            with Image.open(src) as im:
                im = im.convert("RGB")
                scale = 500 / max(im.size)
                im = im.resize((round(im.size[0] * scale), round(im.size[1] * scale)), Image.BILINEAR)
                made[src] = folder / f"{src.stem}.jpg"
                im.save(made[src], quality=90)
        if i >= len(files):
            (folder / f"{i:05d}_{src.stem}.jpg").write_bytes(made[src].read_bytes())
    return folder


def parity(binary: Path, work: Path) -> dict:
    model = identity_model(work / "id224.onnx", 224)
    out = work / "parity.npy"
    subprocess.run([str(binary), "run", str(model), "--data", f"images:{photos.photos_dir()},sorted",
                    "--save-outputs", str(out), "--quiet"], check=True)
    mine = np.load(out)
    ref = np.stack([pil_row(str(p)) for p in photos.photo_files()])
    std = np.array([0.229, 0.224, 0.225], np.float32)[None, :, None, None]
    levels = np.abs(mine - ref) * std * 255
    return {"photos": len(ref), "max_difference_levels": float(levels.max()),
            "fraction_above_one_level": float((levels > 1 + 1e-3).mean()),
            "identical_photos": int(sum(np.array_equal(a, b) for a, b in zip(mine, ref)))}


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed(binary: Path, folder: Path, work: Path, repeats: int) -> list[dict]:
    files = [str(p) for p in photos.photo_files(folder)]
    model = pooling_model(work / "pool224.onnx", 224)
    rows = []

    def pil(workers: int):
        if workers == 1:
            for f in files:
                pil_row(f)
        else:
            with Pool(workers) as pool:
                for _ in pool.imap(pil_row, files, chunksize=16):
                    pass

    def lowbit(threads: int):
        env = dict(os.environ, LOWBIT_THREADS=str(threads))
        subprocess.run([str(binary), "run", str(model), "--data", f"images:{folder}", "--batch-size", "64", "--quiet"],
                       check=True, env=env, capture_output=True)

    for threads in (1, 2):
        p = median_seconds(lambda: pil(threads), repeats)
        q = median_seconds(lambda: lowbit(threads), repeats)
        rows.append({"threads": threads, "images": len(files), "pil_images_per_second": len(files) / p,
                     "lowbit_images_per_second": len(files) / q, "lowbit_over_pil": p / q})
    return rows


def memory(binary: Path, source: Path, work: Path, counts: list[int]) -> list[dict]:
    model = small_convnet(work / "small.onnx")
    rows = []
    for n in counts:
        folder = work / f"mem{n}"
        folder.mkdir(exist_ok=True)
        sources = photos.photo_files(source)
        for i in range(n):
            target = folder / f"{i:05d}.jpg"
            if not target.exists():
                target.symlink_to(sources[i % len(sources)])
        report = work / f"mem{n}.json"
        row = timed([str(binary), "ptq", str(model), "--calib", f"images:{folder}", "--calib-size", str(n),
                     "--range-setting-only", "-o", str(work / f"mem{n}.onnx"), "--json", str(report), "--quiet"], 3600)
        if row["ok"]:
            row["report_peak_mib"] = json.loads(report.read_text())["peak_bytes"] / 2**20
        rows.append({"images": n, **row})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memory-images", type=int, nargs="+", default=[500, 5000, 10000])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--under-load", default="nothing else ran")
    args = ap.parse_args(argv)
    binary = R.lowbit_bin()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = imagenet_folder(work / "imagenet_like", args.images)
        result = {
            "benchmark": "images", **{"commit": R.git_checkout()["head"], "dirty": R.git_checkout()["dirty"]},
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "under_load": args.under_load,
            "settings": {"images": args.images, "repeats": args.repeats, "memory_images": args.memory_images},
            "parity": parity(binary, work),
            "speed": speed(binary, folder, work, args.repeats),
            "memory": memory(binary, folder, work, args.memory_images),
        }
    print(json.dumps({k: result[k] for k in ("parity", "speed")}, indent=1))
    for m in result["memory"]:
        print(f"memory: {m['images']} images: {m.get('peak_mib', 0):.0f} MiB peak, {m['seconds']:.1f} s, ok {m['ok']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
