#!/usr/bin/env python3
"""Seed corpora for the fuzz targets (tools/fuzz.py): small valid inputs of every kind, written
to DIR/<target>/. ONNX: one-op graphs of common ops with fixed small shapes and their
initializers, plus the QDQ form; images: JPEG (baseline, progressive, gray, CMYK) and PNG (RGB,
palette with transparency, RGBA, 1-bit, 16-bit gray); tokenizer: the MiniLM tokenizer.json cut to
a small vocabulary with a text after it; text: lines with accents, CJK and CRLF; config: a
QuantConfig with a data object; npy/npz/idx: the test fixtures.

    python3 tools/fuzz_seeds.py DIR
"""
from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def onnx_seeds(out: Path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)

    def save(name, nodes, inputs, outputs, inits=()):
        g = helper.make_graph(nodes, name, inputs, outputs, list(inits))
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        (out / f"{name}.onnx").write_bytes(m.SerializeToString())

    x4 = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = lambda shape: helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)  # noqa: E731
    w = numpy_helper.from_array(rng.standard_normal((3, 2, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(3, np.float32), "b")
    save("conv", [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])], [x4], [y([1, 3, 4, 4])], [w, b])
    save("relu_add", [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "x"], ["y"])], [x4], [y([1, 2, 4, 4])])
    save("pool", [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])], [x4], [y([1, 2, 2, 2])])
    x2 = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])
    m = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "m")
    save("matmul", [helper.make_node("MatMul", ["x", "m"], ["y"])], [x2], [y([2, 4])], [m])
    shape = numpy_helper.from_array(np.array([4, 4], np.int64), "s")
    save("reshape_softmax", [helper.make_node("Reshape", ["x", "s"], ["r"]), helper.make_node("Softmax", ["r"], ["y"])],
         [x2], [y([4, 4])], [shape])
    scale = numpy_helper.from_array(np.array(0.02, np.float32), "sc")
    zp = numpy_helper.from_array(np.array(0, np.int8), "zp")
    save("qdq", [helper.make_node("QuantizeLinear", ["x", "sc", "zp"], ["q"]), helper.make_node("DequantizeLinear", ["q", "sc", "zp"], ["y"])],
         [x2], [y([2, 8])], [scale, zp])
    ln_s = numpy_helper.from_array(np.ones(8, np.float32), "g")
    save("layernorm", [helper.make_node("LayerNormalization", ["x", "g"], ["y"], axis=-1)], [x2], [y([2, 8])], [ln_s])


def image_seeds(out: Path):
    from PIL import Image
    rng = np.random.default_rng(1)
    base = Image.fromarray(rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)).resize((26, 18))
    base.save(out / "rgb.jpg", quality=80)
    base.save(out / "progressive.jpg", progressive=True)
    base.convert("L").save(out / "gray.jpg")
    base.convert("CMYK").save(out / "cmyk.jpg")
    base.save(out / "rgb.png")
    base.convert("P", palette=Image.ADAPTIVE, colors=8).save(out / "palette.png", transparency=2)
    base.convert("RGBA").save(out / "rgba.png")
    base.convert("1").save(out / "bits.png")
    Image.fromarray(rng.integers(0, 70000, (6, 5)).astype(np.uint16)).save(out / "gray16.png")


def tokenizer_seeds(out: Path, shared: Path):
    tok = json.loads((shared / "data" / "minilm" / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    keep = sorted(vocab.items(), key=lambda kv: kv[1])[:200]
    tok["model"]["vocab"] = {k: i for i, (k, _) in enumerate(keep)}
    tok["added_tokens"] = [t for t in tok.get("added_tokens", []) if t["content"] in tok["model"]["vocab"]]
    for t in tok["added_tokens"]:
        t["id"] = tok["model"]["vocab"][t["content"]]
    if tok.get("post_processor"):
        tok["post_processor"] = {"type": "BertProcessing", "sep": ["[SEP]", tok["model"]["vocab"].get("[SEP]", 0)],
                                 "cls": ["[CLS]", tok["model"]["vocab"].get("[CLS]", 0)]}
    tok.pop("padding", None)
    tok.pop("truncation", None)
    body = json.dumps(tok).encode()
    text = "Hello, wörld! 北京 [MASK] don't".encode()
    # The target splits its input in half: the file, then the text.
    pad = max(len(body) - len(text), 0)
    (out / "wordpiece").write_bytes(body + text + b" " * pad)
    bpe = {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "\u0120": 3}, "merges": ["a b"]},
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}}
    body = json.dumps(bpe).encode()
    (out / "bpe").write_bytes(body + b"ab ba aab" + b" " * max(len(body) - 9, 0))


def checkpoint_seed(out: Path):
    """A real checkpoint: one epoch of `lowbit train` on a linear model over 64 Fashion-MNIST
    images (needs the release binary and Debian's Fashion-MNIST; an empty file otherwise)."""
    import subprocess
    import tempfile
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    binary = ROOT / ".build" / "release" / "lowbit"
    (out / "empty").write_bytes(b"")
    if not binary.exists():
        return
    with tempfile.TemporaryDirectory() as tmp:
        w = numpy_helper.from_array(np.zeros((10, 784), np.float32) + 0.01, "w")
        b = numpy_helper.from_array(np.zeros(10, np.float32), "b")
        nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1)]
        g = helper.make_graph(nodes, "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], [w, b])
        model = Path(tmp) / "linear.onnx"
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), model)
        proc = subprocess.run([str(binary), "train", str(model), "--train", "fashion-mnist:train:64", "--epochs", "1",
                               "--checkpoint-dir", str(Path(tmp) / "ck"), "-o", str(Path(tmp) / "out.onnx"), "--quiet"],
                              capture_output=True)
        for f in sorted((Path(tmp) / "ck").glob("*.ckpt"))[:1] if proc.returncode == 0 else []:
            shutil.copy(f, out / "linear.ckpt")


def main() -> int:
    out = Path(sys.argv[1])
    shared = Path(ROOT / ".." / "shared").resolve()
    for target in ("onnx", "npy", "npz", "idx", "image", "tokenizer", "text", "config", "checkpoint"):
        (out / target).mkdir(parents=True, exist_ok=True)
    fixtures = ROOT / "Tests" / "LowbitDataTests" / "Fixtures"
    for f in fixtures.glob("*.npy"):
        shutil.copy(f, out / "npy")
    for f in fixtures.glob("*.npz"):
        shutil.copy(f, out / "npz")
    for f in fixtures.glob("*.idx*"):
        shutil.copy(f, out / "idx")
    onnx_seeds(out / "onnx")
    image_seeds(out / "image")
    tokenizer_seeds(out / "tokenizer", shared)
    (out / "text" / "lines.txt").write_bytes("first line\r\ncafé naïve\n\n北京欢迎你\n  \nlast".encode())
    (out / "config" / "config.json").write_text(json.dumps(
        {"weight_bits": 4, "per_channel": True, "activation_range": "mse",
         "data": {"preprocess": "imagenet", "resize": 9, "crop": "8x8", "mean": [0.5, 0.5, 0.5]}}))
    checkpoint_seed(out / "checkpoint")
    return 0


if __name__ == "__main__":
    sys.exit(main())
