#!/usr/bin/env python3
"""Real inputs end to end: `lowbit ptq` calibrated on a folder of photos and on a text file, and
judged by its own report on photos and sentences it did not calibrate on.

    python3 benchmarks/bench_end_to_end.py [--json benchmarks/results/end_to_end.json]
        [--image-args ...] [--text-args ...] [--under-load "..."]

- Images: the shared photos split by `photos.photo_split`'s rule (a seeded shuffle, seed 0, the
  first half to calibrate, the rest held out) into two folders of links; `lowbit ptq
  efficientnet_lite2.onnx --calib images:calib/ --eval images:held_out/ --preprocess imagenet
  --per-channel` (W8A8): the report's top-1 agreement with the float model, KL divergence and
  logit SQNR on the held-out photos.
- Text: `lowbit ptq minilm_l6_embed.onnx --calib text:calib_sentences.txt --eval
  text:eval_sentences.txt --tokenizer tokenizer.json --max-length 64 --mixed-precision 18`: the
  report's embedding cosine and SQNR on the 2,000 evaluation sentences.
"""
from __future__ import annotations

import argparse
import json
import random
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


def ptq(binary: Path, args: list[str], report: Path) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([str(binary), "ptq", *map(str, args), "--json", str(report), "--quiet"],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        return {"ok": False, "seconds": seconds, "reason": proc.stderr.strip()[-600:]}
    r = json.loads(report.read_text())
    return {"ok": True, "seconds": seconds, "peak_mib": (r.get("peak_bytes") or 0) / 2**20,
            "evaluation": r.get("evaluation"), "steps": [{k: s.get(k) for k in ("step", "seconds", "detail")} for s in r["steps"]]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--image-args", nargs="*", default=["--per-channel"])
    ap.add_argument("--text-args", nargs="*", default=["--mixed-precision", "18"])
    ap.add_argument("--under-load", default="nothing else ran")
    args = ap.parse_args(argv)
    binary = R.lowbit_bin()
    shared = R.shared_dir()
    result = {"benchmark": "end to end", **R.git_checkout(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "under_load": args.under_load, "image_args": args.image_args, "text_args": args.text_args}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = photos.photo_files()
        random.Random(0).shuffle(files)
        half = len(files) // 2
        for name, part in (("calib", files[:half]), ("held_out", files[half:])):
            (work / name).mkdir()
            for f in part:
                (work / name / f.name).symlink_to(f)
        result["images"] = {"calibration_photos": half, "held_out_photos": len(files) - half, **ptq(binary, [
            shared / "models" / "efficientnet_lite2.onnx", "--calib", f"images:{work / 'calib'}",
            "--eval", f"images:{work / 'held_out'}", "--preprocess", "imagenet", "-o", work / "effnet.onnx",
            *args.image_args], work / "effnet.json")}
        d = shared / "data" / "minilm"
        result["text"] = ptq(binary, [
            shared / "models" / "minilm_l6_embed.onnx", "--calib", f"text:{d / 'calib_sentences.txt'}",
            "--eval", f"text:{d / 'eval_sentences.txt'}", "--tokenizer", d / "tokenizer.json", "--max-length", "64",
            "-o", work / "minilm.onnx", *args.text_args], work / "minilm.json")
    for key in ("images", "text"):
        r = result[key]
        e = r.get("evaluation") or {}
        print(f"{key}: ok {r['ok']}, {r['seconds']:.0f} s, agreement {100 * e.get('argmax_agreement', 0):.2f}%, "
              f"KL {e.get('kl_divergence', float('nan')):.4f}, SQNR {e.get('sqnr_db', float('nan')):.2f} dB, "
              f"cosine {e.get('mean_cosine', float('nan')):.5f}" + ("" if r["ok"] else f" ({r['reason']})"))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
