#!/usr/bin/env python3
"""Writes assets/architectures/fm_*.onnx: the demo models' graphs with every float initializer
set to zero. They carry the architecture only (`lowbit train --from-scratch` initializes the
parameters), and all-zero tensors cost git almost nothing. `lowbit demo` trains a demo model from
its architecture when the trained copy in assets/models is missing.

    python3 tools/make-architectures.py      # needs the `onnx` and `numpy` packages
"""
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

REPO = Path(__file__).resolve().parents[1]
out_dir = REPO / "assets" / "architectures"
out_dir.mkdir(parents=True, exist_ok=True)
for path in sorted((REPO / "assets" / "models").glob("fm_*.onnx")):
    m = onnx.load(str(path))
    for i, t in enumerate(m.graph.initializer):
        a = numpy_helper.to_array(t)
        if a.dtype.kind == "f":
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.zeros_like(a), t.name))
    m.doc_string = "architecture only: every float initializer is zero (lowbit train --from-scratch initializes them)"
    onnx.checker.check_model(m)
    onnx.save(m, str(out_dir / path.name))
    print(f"wrote {out_dir / path.name}")
