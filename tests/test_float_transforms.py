"""BatchNorm folding, cross-layer equalization and high-bias absorption keep the float function.

For every shared model, `lowbit ptq --cle --no-adaround --bias-correction none --float-output F`
(with min-max ranges and no quantizer tuning, which do not touch the float graph) writes the float
model after those transforms (the graph the quantizers are placed on, before any weight is
quantized); ONNX Runtime runs the original and F on real inputs and their outputs must
agree within `max |y' - y| / max |y| <= 1e-4`. Inputs: the shared natural photos (ImageNet
preprocessing, centre crops at the model's size) for EfficientNet-Lite2 and the torchvision
architectures, the Fashion-MNIST test images for the fm_* models, the stored sentences for MiniLM.
BatchNorm folding and CLE are exact for every input, so they are checked on the calibration inputs
and on inputs the transforms never saw. High-bias absorption (paper eq. 10-11) is exact where each
absorbed channel's pre-activation stays at or above its `c`, which lowbit takes from the
calibration data's minimum: it is checked on the calibration inputs, where that holds by
construction (and lowbit checks it there itself before quantizing).

The EfficientNet case is the one that failed before: DFQ's equalization replaced ReLU6 by ReLU,
which left 21% top-1 agreement with the original on these photos.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import ort_reference as R

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from photos import photo_split  # noqa: E402

TOLERANCE = 1e-4
# The float transforms run; what follows them is kept cheap (min-max ranges, no quantizer tuning),
# since only the float graph written by --float-output is checked here.
FLOAT_ONLY = ("--cle", "--no-adaround", "--bias-correction", "none", "--no-tune-quantizers",
              "--w-range", "min-max", "--a-range", "min-max")
IMAGE_SIZES = {"efficientnet_lite2": 260, "resnet18": 224, "mobilenet_v2": 224, "resnet50": 224, "inception_v3": 299}


def max_relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def ort_outputs(path: Path, feeds: dict) -> list[np.ndarray]:
    sess = R.ort_session(path)
    return sess.run(None, feeds)


def inputs(name: str, shared: Path):
    """(calibration feeds saved as lowbit data spec, calibration feeds, held-out feeds)."""
    if name in IMAGE_SIZES:
        calib, held = photo_split(IMAGE_SIZES[name], seed=0, crops=1)
        return calib[:16], held[:16]
    if name.startswith("fm_"):
        x, _ = R.load_fashion_mnist("test", 96)
        return x[:64], x[64:]
    feeds = R.minilm_eval_feeds(48)
    return ({k: v[:32] for k, v in feeds.items()}, {k: v[32:] for k, v in feeds.items()})


@pytest.mark.parametrize("name", ["efficientnet_lite2", "fm_mobilenetv2", "fm_resnet20", "fm_inception",
                                  "mobilenet_v2", "resnet18", "resnet50", "inception_v3", "minilm_l6_embed"])
def test_transforms_keep_the_float_outputs(name, lowbit, shared, tmp_path):
    model = R.model_path(name) if name != "efficientnet_lite2" else shared / "models" / f"{name}.onnx"
    calib, held = inputs(name, shared)
    if isinstance(calib, dict):
        for k, v in calib.items():
            np.save(tmp_path / f"{k}.npy", v)
        spec = "npy:" + ",".join(f"{k}={tmp_path / k}.npy" for k in calib)
        input_name = None
    else:
        np.save(tmp_path / "calib.npy", calib)
        spec = f"npy:{tmp_path / 'calib.npy'}"
        input_name = R.ort_session(model).get_inputs()[0].name
    def transformed(*flags):
        out, js = tmp_path / f"float{len(flags)}.onnx", tmp_path / f"r{len(flags)}.json"
        lowbit.ok("ptq", model, "--calib", spec, "-o", tmp_path / "q.onnx", *FLOAT_ONLY, "--float-output", out,
                  "--json", js, "--quiet", *flags)
        report = json.loads(js.read_text())
        # Every transform that ran was checked by lowbit itself and kept.
        assert all(c["kept"] and c["max_relative_error"] <= TOLERANCE for c in report["transform_checks"]), \
            report["transform_checks"]
        return out, report

    feeds = {which: data if isinstance(data, dict) else {input_name: data}
             for which, data in (("calibration", calib), ("held out", held))}
    want = {which: ort_outputs(model, f) for which, f in feeds.items()}

    def check(out, which):
        for w, g in zip(want[which], ort_outputs(out, feeds[which])):
            assert max_relative_error(g, w) <= TOLERANCE, \
                f"{name}, {which}: max relative error {max_relative_error(g, w):.3g}"

    out, report = transformed()
    check(out, "calibration")
    exact, _ = transformed("--no-bias-absorption")
    check(exact, "calibration")
    check(exact, "held out")
    if name in ("efficientnet_lite2", "fm_mobilenetv2"):
        # These have ReLU6 between equalized layers: the bounds stayed, per channel.
        assert report["equalized_pairs"] > 0
