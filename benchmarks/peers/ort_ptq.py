"""ONNX Runtime static quantization (onnxruntime.quantization.quantize_static) as a peer of
`lowbit ptq`, for benchmarks/bench_ptq.py.

Runs in the project's own Python (onnx, onnxruntime, numpy). One call quantizes one model at one
setting with one calibration method and writes a QDQ ONNX file:

- `quant_pre_process` first (shape inference plus ONNX Runtime's graph optimizations, which fold
  BatchNormalization into the convolutions), as ONNX Runtime's quantization guide advises;
- `quantize_static(..., quant_format=QDQ, activation_type=QUInt8, weight_type=QInt8 or QInt4,
  per_channel=...)`, asymmetric uint8 activations and symmetric signed weights (ORT's default
  `WeightSymmetric=True`), everything else left at ORT's defaults;
- calibration data: the given float32 array, fed in batches of `batch_size`.

Usable from the command line too:

    python3 benchmarks/peers/ort_ptq.py MODEL CALIB.npy OUT.onnx --method minmax --w-bits 4
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

METHODS = ("minmax", "percentile", "entropy")


def ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy}[name]


def _weight_type(bits: int):
    """(QuantType, None) or (None, reason it is not available)."""
    from onnxruntime.quantization import QuantType

    if bits == 8:
        return QuantType.QInt8, None
    if bits == 4:
        if not hasattr(QuantType, "QInt4"):
            return None, f"onnxruntime {ort_version()} has no QuantType.QInt4"
        return QuantType.QInt4, None
    return None, f"weight bits {bits}: quantize_static offers 4, 8 (or 16) bit integer weights only"


def _activation_type(bits: int):
    from onnxruntime.quantization import QuantType

    if bits == 8:
        return QuantType.QUInt8, None
    if bits == 16:
        return QuantType.QUInt16, None
    return None, f"activation bits {bits}: not an ONNX Runtime activation type"


class _Reader:
    """CalibrationDataReader over one float32 array, `batch` rows at a time."""

    def __init__(self, input_name: str, x: np.ndarray, batch: int):
        self.input_name, self.x, self.batch = input_name, x, batch
        self.pos = 0

    def get_next(self):
        if self.pos >= len(self.x):
            return None
        part = self.x[self.pos:self.pos + self.batch]
        self.pos += self.batch
        return {self.input_name: np.ascontiguousarray(part)}

    def rewind(self):
        self.pos = 0

    def __len__(self):
        return (len(self.x) + self.batch - 1) // self.batch


def quantize(model: Path, out: Path, calib: np.ndarray, method: str = "minmax", w_bits: int = 8,
             a_bits: int = 8, per_channel: bool = False, batch_size: int = 64,
             threads: int | None = None) -> dict:
    """Quantize `model` into `out`. Returns {"ok", "seconds", "steps": [{"step", "seconds"}],
    "options": {...}} or {"ok": False, "reason": ...} (an unsupported setting or ORT's error)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    wtype, why = _weight_type(w_bits)
    atype, why_a = _activation_type(a_bits)
    if wtype is None or atype is None:
        return {"ok": False, "reason": why or why_a}
    logging.getLogger().setLevel(logging.ERROR)  # ORT's quantizer warns per tensor otherwise
    options = {"quant_format": "QDQ", "activation_type": str(atype), "weight_type": str(wtype),
               "per_channel": per_channel, "calibrate_method": method, "batch_size": batch_size,
               "pre_process": "quant_pre_process (defaults)"}
    steps = []
    t_all = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="ort-ptq-") as tmp:
            pre = Path(tmp) / "pre.onnx"
            t = time.perf_counter()
            quant_pre_process(str(model), str(pre))
            steps.append({"step": "quant_pre_process", "seconds": time.perf_counter() - t})
            input_name = onnx.load(str(pre), load_external_data=False).graph.input[0].name
            reader = _Reader(input_name, calib, batch_size)
            extra = {}
            if threads:
                # quantize_static has no thread option; calibration sessions use ORT's default
                # (all cores). Recorded only.
                options["threads_note"] = "calibration sessions use ORT defaults (all cores)"
            t = time.perf_counter()
            quantize_static(str(pre), str(out), calibration_data_reader=reader,
                            quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=atype, weight_type=wtype,
                            calibrate_method=_method(method), extra_options=extra)
            steps.append({"step": "quantize_static (calibration + QDQ)",
                          "seconds": time.perf_counter() - t})
    except Exception as e:  # an unsupported combination or an ORT bug: report, do not crash
        return {"ok": False, "reason": f"{type(e).__name__}: {e}".strip()[:600],
                "options": options}
    return {"ok": True, "seconds": time.perf_counter() - t_all, "steps": steps,
            "options": options}


def main(argv=None):
    ap = argparse.ArgumentParser(description="ORT quantize_static, one model, one setting")
    ap.add_argument("model", type=Path)
    ap.add_argument("calib", type=Path, help=".npy float32 calibration inputs")
    ap.add_argument("out", type=Path)
    ap.add_argument("--method", choices=METHODS, default="minmax")
    ap.add_argument("--w-bits", type=int, default=8)
    ap.add_argument("--a-bits", type=int, default=8)
    ap.add_argument("--per-channel", action="store_true")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--mmap", action="store_true",
                    help="read the calibration array through a memory map, a batch at a time")
    a = ap.parse_args(argv)
    res = quantize(a.model, a.out, np.load(a.calib, mmap_mode="r" if a.mmap else None), a.method, a.w_bits,
                   a.a_bits, a.per_channel, a.batch_size)
    print(json.dumps(res, indent=1))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
