"""`lowbit ptq --report FILE`: one self-contained HTML page of the run and of the white paper's
debugging flow (issue 23), whose numbers are also in --json.

- the page has no script and loads nothing (its only URL is the SVG namespace), every inline SVG
  is well-formed XML, and it names every quantizer and layer the JSON's diagnosis lists;
- the diagnosis: the sanity check (the transformed float graph with quantizers off against the
  original) is at float rounding, "all quantizers" is the written file (its output SQNR against
  FP32 equals the one ONNX Runtime's run of the file gives, within float rounding), and the
  weights-only and activations-only variants are measured too;
- headless Chromium (Debian's `chromium`) renders the page: the screenshot is not blank (its
  pixels vary, and not only near white) and the browser logs no console error;
- a bad destination fails before any work.
"""
from __future__ import annotations

import json
import re
import xml.dom.minidom

import numpy as np

import chromium
import ort_reference as R
from PIL import Image

CALIB = "fashion-mnist:train:256"


def _sqnr(ref, q):
    noise = float(((ref.astype(np.float64) - q) ** 2).sum())
    return float("inf") if noise == 0 else 10 * np.log10(float((ref.astype(np.float64) ** 2).sum()) / noise)


def test_report_page_and_json(models, lowbit, tmp_path):
    out, page, js = tmp_path / "q.onnx", tmp_path / "report.html", tmp_path / "q.json"
    x, _ = R.load_fashion_mnist("test", limit=64)
    np.save(tmp_path / "eval.npy", x)
    lowbit.ok("ptq", models["fm_mobilenetv2"], "--calib", CALIB, "-o", out, "--effort", "fast", "--w-bits", "4",
              "--eval", f"npy:{tmp_path / 'eval.npy'}", "--report", page, "--json", js, "--quiet")
    html = page.read_text()
    assert "<script" not in html.lower()
    assert set(re.findall(r"https?://[^\"' )]+", html)) == {"http://www.w3.org/2000/svg"}
    svgs = re.findall(r"<svg.*?</svg>", html, re.S)
    assert len(svgs) >= 4
    for s in svgs:
        xml.dom.minidom.parseString(s)
    d = json.loads(js.read_text())["diagnosis"]
    assert d["samples"] == 64
    for q in d["quantizers"]:
        assert q["name"] in html
    for layer in d["layers"]:
        assert layer["node"] in html
    assert d["sanityMaxDifference"] < 1e-3
    variants = {v["name"]: v for v in d["variants"]}
    assert set(variants) == {"all quantizers", "weights only", "activations only"}
    assert all(v["loss"] >= 0 and v["sqnr"] > 10 for v in variants.values()), variants
    fp32 = next(iter(R.run_ort(models["fm_mobilenetv2"], {"input": x}).values()))
    q = next(iter(R.run_ort(out, {"input": x}).values()))
    assert abs(variants["all quantizers"]["sqnr"] - _sqnr(fp32, q)) < 0.05, (variants["all quantizers"], _sqnr(fp32, q))


def test_report_renders_in_chromium(models, lowbit, tmp_path):
    page, png = tmp_path / "report.html", tmp_path / "report.png"
    lowbit.ok("ptq", models["fm_resnet20"], "--calib", CALIB, "-o", tmp_path / "q.onnx", "--effort", "fast",
              "--report", page, "--quiet")
    log = chromium.render(page, png, width=1100, height=1600)
    assert not chromium.console_errors(log), chromium.console_errors(log)
    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.float64)
    assert pixels.shape == (1600, 1100)
    assert pixels.std() > 20, pixels.std()            # text, tables and bars, not a blank page
    assert (pixels < 128).mean() > 0.01               # a visible share of dark pixels
    # The bar charts are drawn: the plot colour appears.
    rgb = np.asarray(Image.open(png).convert("RGB"), dtype=np.int32)
    blue = (abs(rgb[..., 0] - 0x2e) < 12) & (abs(rgb[..., 1] - 0x86) < 12) & (abs(rgb[..., 2] - 0xc1) < 12)
    assert blue.sum() > 500, blue.sum()


def test_report_destination_checked_first(models, lowbit, tmp_path):
    proc = lowbit("ptq", models["fm_resnet20"], "--calib", CALIB, "-o", tmp_path / "q.onnx",
                  "--report", tmp_path / "missing" / "r.html", "--quiet")
    assert proc.returncode != 0 and "r.html" in proc.stderr, R.describe_proc(proc)
    assert not (tmp_path / "q.onnx").exists()
