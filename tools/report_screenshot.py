#!/usr/bin/env python3
"""The README's screenshot of a `lowbit debug` report: fm_mobilenetv2 per-tensor W4A8 without CLE
(the white paper's table-3 case), calibrated on 512 Fashion-MNIST training images and measured on
the first 64 test images, rendered by headless Chromium to docs/images/debug-report.png (the top
of the page, 1100 x 1800 pixels).

    python3 tools/report_screenshot.py [--out docs/images/debug-report.png]

Uses $LOWBIT_BIN or .build/release/lowbit; keeps the page next to the image as debug-report.html.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "golden"))
import chromium  # noqa: E402
import ort_reference as R  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "debug-report.png")
    a = ap.parse_args()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    page = a.out.with_suffix(".html")
    with tempfile.TemporaryDirectory() as tmp:
        x, _ = R.load_fashion_mnist("test", limit=64)
        np.save(Path(tmp) / "held.npy", x)
        subprocess.run([str(R.lowbit_bin()), "debug", str(R.model_path("fm_mobilenetv2")),
                        "--calib", "fashion-mnist:train:512", "--eval", f"npy:{Path(tmp) / 'held.npy'}",
                        "--w-bits", "4", "--no-cle", "-o", str(page), "--quiet"], check=True)
    chromium.render(page, a.out, width=1100, height=1800)
    print(f"wrote {a.out} and {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
