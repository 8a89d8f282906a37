"""TensorRT's documented rules for explicitly quantized ONNX files, as a checker (no TensorRT here).

Each rule names its source (docs/deployment.md lists them with links):
  R1 zero points present, int8, all zero       onnx-tensorrt parser ("zeroPt must be all zeros"),
                                               TensorRT docs: symmetric quantization, signed INT8
  R2 quantized weights int8 in [-127, 127]     TensorRT docs: INT8 weights use [-127, 127]
  R3 per-channel weights on the output axis    TensorRT docs: weight scales per output channel
  R4 activations one scale per tensor          TensorRT docs: per-channel scales for weights only
  R5 no INT32 dequantization (float biases)    TensorRT docs: IDequantizeLayer takes INT8/FP8/INT4
  R6 every Conv/Gemm/MatMul with a quantized   TensorRT docs: quantize all inputs of weighted ops
     weight reads a dequantized activation     so the layer runs in INT8 (else FP32/FP16)
  R7 default-domain opset 13 or later          per-axis Q/DQ (TensorRT's ONNX parser)

`violations(model)` returns one line per broken rule instance, naming the node.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np
import onnx
from onnx import numpy_helper

# Ops a dequantized value may pass through before a weighted layer: TensorRT propagates DQ
# forward through ops that commute with it (its Q/DQ propagation).
COMMUTING = {"MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Pad", "Slice",
             "Identity", "GlobalMaxPool", "Concat", "Split", "Gather"}


def _output_axis(node: onnx.NodeProto, rank: int) -> int:
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return rank - 1  # MatMul: B [.., K, N]


def violations(model: onnx.ModelProto) -> List[str]:
    g = model.graph
    inits: Dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    elem = {i.name: i.data_type for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: Dict[str, List[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    found: List[str] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        found.append(f"R7: opset {opset} < 13")
    for n in g.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        where = f"{n.op_type} '{n.name}'"
        if len(n.input) < 3 or not n.input[2]:
            found.append(f"R1: {where} has no zero point (its type would be uint8)")
        else:
            z = n.input[2]
            if elem.get(z) != onnx.TensorProto.INT8:
                found.append(f"R1: {where} zero point is not int8 (type {elem.get(z)})")
            elif np.any(inits[z] != 0):
                found.append(f"R1: {where} zero point is not all zeros")
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            w = inits[n.input[0]]
            if elem.get(n.input[0]) == onnx.TensorProto.INT32:
                found.append(f"R5: {where} dequantizes an INT32 tensor (a quantized bias)")
                continue
            if elem.get(n.input[0]) == onnx.TensorProto.INT8 and w.size and w.min() < -127:
                found.append(f"R2: {where} weight integers reach {int(w.min())} (< -127)")
            scale = inits.get(n.input[1])
            if scale is not None and scale.size > 1:
                axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
                axis = axis + w.ndim if axis < 0 else axis
                for c in consumers.get(n.output[0], []):
                    if c.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") and c.input[1] == n.output[0]:
                        want = _output_axis(c, w.ndim)
                        if axis != want:
                            found.append(f"R3: {where} scales along axis {axis}, {c.op_type} '{c.name}' outputs along {want}")
        elif n.op_type == "QuantizeLinear" or n.input[0] not in inits:
            scale = inits.get(n.input[1])
            if scale is None or scale.size != 1:
                found.append(f"R4: {where} quantizes an activation with {getattr(scale, 'size', '?')} scales")
    for n in g.node:
        if n.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul") or len(n.input) < 2:
            continue
        w = producer.get(n.input[1])
        if w is None or w.op_type != "DequantizeLinear" or w.input[0] not in inits:
            continue
        v = n.input[0]
        while v in producer and producer[v].op_type in COMMUTING:
            v = producer[v].input[0]
        if v not in producer or producer[v].op_type != "DequantizeLinear":
            found.append(f"R6: {n.op_type} '{n.name}' has a quantized weight but a float input")
    return found
