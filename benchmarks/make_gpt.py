#!/usr/bin/env python3
"""A small GPT-style decoder language model to quantize (issue 24): trained here, written as ONNX.

    python3 benchmarks/make_gpt.py [--size gpt|gpt-tiny] [--out .cache/gpt] [--threads 2] [--force]

Text: the King James Bible (public domain) from Debian's `bible-kjv-text`, printed verse by
verse by the `bible` program of `bible-kjv` (both fetched with `apt-get download` and unpacked
with `dpkg-deb -x` into `.cache/debs/`, nothing installed): chapter headings ("Genesis 1") and
one verse per line without its number, ASCII, about 4.2 MB. Tokens are the text's bytes
(vocabulary 256). The first 90% of the bytes train the model; the last 10% (Acts 22 to
Revelation) are held out, and `heldout.npy`'s 1,024 windows run from Acts 22 to 2 Corinthians 1.

Model: pre-LayerNorm GPT, learned token and position embeddings, causal self-attention, GELU
(erf) MLP 4x, final LayerNorm, untied LM head without bias:

  - `gpt`: 4 layers, d_model 256, 4 heads (3.3 M parameters), 1,500 AdamW steps of 16 x 128
    tokens (0.8 passes over the training bytes; about 20 minutes on one core);
  - `gpt-tiny`: 2 layers, d_model 64, 2 heads, 600 steps: a few minutes, for the tests.

Training is PyTorch on the CPU (seeded, deterministic algorithms, `--threads` fixed, default 1:
on a shared 2-core machine two threads ran 3-7x slower than one; the batches come from a seeded
numpy generator). The ONNX file is not an exporter's: `gpt_onnx` writes the
graph from the weights with `onnx.helper` (opset 17), so the test builds the same graph from
random weights without torch. It is a full-sequence forward pass without a KV cache:

  input  `input_ids` int64 [batch, 128]
  output `logits` float32 [batch, 128, 256]

Every MatMul's weight is a [K, N] initializer (ONNX Runtime's MatMulNBits quantizer finds them);
the causal mask is a constant [128, 128] added to the scaled scores (0 on and below the
diagonal, -1e9 above) before the Softmax.

Written to `--out` (default `.cache/gpt` or `.cache/gpt-tiny`, gitignored):

  model.onnx          the float model
  calib.npy           int64 [256, 128]: windows of the training text at seeded offsets
  heldout.npy         int64 [1024, 128]: consecutive windows of the held-out text
  model.json          settings, seed, losses (training; held-out in torch and in ONNX Runtime),
                      ONNX Runtime's largest logit difference from torch, sha256 of every file

Perplexity (here and in bench_gpt.py, tests/test_gpt.py): on each row of 128 tokens the logits
at positions 0..126 predict tokens 1..127; exp of the mean cross-entropy over all of them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEQ = 128
VOCAB = 256
SEED = 0
HELD_OUT_FRACTION = 0.1
CALIB_ROWS = 256
HELD_OUT_ROWS = 1024
DEBIAN_PACKAGES = ("bible-kjv", "bible-kjv-text")

SIZES = {
    "gpt": {"layers": 4, "d_model": 256, "heads": 4, "steps": 1500, "batch": 16, "lr": 1.5e-3, "warmup": 100},
    "gpt-tiny": {"layers": 2, "d_model": 64, "heads": 2, "steps": 600, "batch": 32, "lr": 3e-3, "warmup": 50},
}
WEIGHT_DECAY = 0.1
MIN_LR_FRACTION = 0.1


# --------------------------------------------------------------------------------------------
# Text and tokens
# --------------------------------------------------------------------------------------------


def kjv_text(cache: Path) -> tuple[bytes, dict]:
    """The whole Bible as text, and where it came from (package versions, sha256)."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    for package in DEBIAN_PACKAGES:
        if not list(debs.glob(f"{package}_*.deb")):
            subprocess.run(["apt-get", "download", package], cwd=debs, check=True, capture_output=True)
    unpacked = debs / "root"
    files = sorted(debs.glob("*.deb"))
    for deb in files:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
    # One verse per line (-l: the line width), every verse from the first to the last.
    printed = subprocess.run([str(unpacked / "usr/bin/bible"), "-p", str(unpacked / "usr/lib"), "-l100000",
                              "gen1:1-rev22:21"], check=True, capture_output=True).stdout
    lines = []
    for line in printed.decode("ascii").splitlines():
        if not line.strip():
            continue
        if line.startswith(" "):  # "  12 And God said ...": the verse without its number
            number, _, verse = line.strip().partition(" ")
            assert number.isdigit(), line
            lines.append(verse)
        else:  # a chapter heading
            lines.append(line.strip())
    text = ("\n".join(lines) + "\n").encode("ascii")
    source = {"debian_packages": [f.name for f in files], "bytes": len(text),
              "sha256": hashlib.sha256(text).hexdigest()}
    return text, source


def split_tokens(text: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(training tokens, held-out tokens): the first 90% and the last 10% of the bytes."""
    tokens = np.frombuffer(text, dtype=np.uint8).astype(np.int64)
    cut = int(len(tokens) * (1 - HELD_OUT_FRACTION))
    return tokens[:cut], tokens[cut:]


def calibration_rows(train: np.ndarray, rows: int = CALIB_ROWS, seed: int = SEED) -> np.ndarray:
    """`rows` windows of SEQ training tokens at seeded offsets (a generator of its own)."""
    starts = np.random.default_rng(seed + 1).integers(0, len(train) - SEQ, rows)
    return np.stack([train[s:s + SEQ] for s in starts])


def held_out_rows(held: np.ndarray, rows: int = HELD_OUT_ROWS) -> np.ndarray:
    """The first `rows` consecutive, non-overlapping windows of SEQ held-out tokens."""
    rows = min(rows, len(held) // SEQ)
    return held[:rows * SEQ].reshape(rows, SEQ).copy()


def next_token_loss(logits: np.ndarray, ids: np.ndarray) -> float:
    """Mean cross-entropy (nats) of positions 0..L-2 predicting tokens 1..L-1, in float64."""
    z = logits[:, :-1].astype(np.float64)
    z -= z.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_p, ids[:, 1:, None], axis=-1)
    return float(-picked.mean())


def perplexity(logits: np.ndarray, ids: np.ndarray) -> float:
    """exp(next_token_loss)."""
    return float(np.exp(next_token_loss(logits, ids)))


# --------------------------------------------------------------------------------------------
# The ONNX graph (numpy weights -> ModelProto; no torch)
# --------------------------------------------------------------------------------------------


def weight_names(layers: int) -> list[str]:
    """The initializers `gpt_onnx` expects, in order (Linear weights as [in, out])."""
    names = ["wte", "wpe"]
    for i in range(layers):
        p = f"h{i}."
        names += [p + n for n in ("ln1.weight", "ln1.bias", "q.weight", "q.bias", "k.weight", "k.bias", "v.weight",
                                  "v.bias", "proj.weight", "proj.bias", "ln2.weight", "ln2.bias", "fc.weight",
                                  "fc.bias", "fc2.weight", "fc2.bias")]
    return names + ["ln_f.weight", "ln_f.bias", "head.weight"]


def random_weights(layers: int, d_model: int, seed: int = 0) -> dict[str, np.ndarray]:
    """GPT-2-style initial weights (normal 0.02, LayerNorms 1 and 0) with seeded non-zero biases
    and LayerNorm parameters, so that every initializer matters."""
    rng = np.random.default_rng(seed)
    shapes = {"wte": (VOCAB, d_model), "wpe": (SEQ, d_model), "head.weight": (d_model, VOCAB)}
    for i in range(layers):
        p = f"h{i}."
        for n in ("q", "k", "v", "proj"):
            shapes[p + n + ".weight"] = (d_model, d_model)
        shapes[p + "fc.weight"] = (d_model, 4 * d_model)
        shapes[p + "fc2.weight"] = (4 * d_model, d_model)
    out = {}
    for name in weight_names(layers):
        if name in shapes:
            out[name] = rng.normal(0, 0.02 if name != "wte" else 1.0, shapes[name])
        else:
            width = 4 * d_model if name.endswith("fc.bias") else d_model
            base = 1.0 if "ln" in name and name.endswith("weight") else 0.0
            out[name] = base + rng.normal(0, 0.05, width)
    return {k: v.astype(np.float32) for k, v in out.items()}


def gpt_onnx(weights: dict[str, np.ndarray], layers: int, heads: int, name: str = "gpt"):
    """The decoder as an ONNX ModelProto (opset 17): `input_ids` int64 [batch, SEQ] -> `logits`
    float32 [batch, SEQ, VOCAB]. Per layer: x += proj(attn(LN1(x))); x += fc2(gelu(fc(LN2(x)))),
    attention softmax(q k^T / sqrt(d_head) + mask) v with the causal mask a constant."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    d_model = weights["wte"].shape[1]
    d_head = d_model // heads
    nodes, inits = [], [numpy_helper.from_array(weights[n].astype(np.float32), n) for n in weight_names(layers)]

    def const(n, array):
        inits.append(numpy_helper.from_array(np.asarray(array), n))
        return n

    def node(op, inputs, out, **attrs):
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    mask = np.triu(np.full((SEQ, SEQ), -1e9, np.float32), k=1)
    const("causal_mask", mask)
    const("attn_scale", np.array(1 / np.sqrt(d_head), np.float32))
    const("heads_shape", np.array([0, SEQ, heads, d_head], np.int64))
    const("model_shape", np.array([0, SEQ, d_model], np.int64))
    const("half", np.array(0.5, np.float32))
    const("one", np.array(1.0, np.float32))
    const("inv_sqrt2", np.array(1 / np.sqrt(2), np.float32))

    def layer_norm(x, p):
        return node("LayerNormalization", [x, p + ".weight", p + ".bias"], p, axis=-1, epsilon=1e-5)

    def linear(x, p, bias=True):
        y = node("MatMul", [x, p + ".weight"], p + ".matmul")
        return node("Add", [y, p + ".bias"], p + ".add") if bias else y

    x = node("Gather", ["wte", "input_ids"], "embed.tokens", axis=0)
    x = node("Add", [x, "wpe"], "embed")
    for i in range(layers):
        p = f"h{i}."
        h = layer_norm(x, p + "ln1")
        q = node("Transpose", [node("Reshape", [linear(h, p + "q"), "heads_shape"], p + "q.heads")], p + "q.t",
                 perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [linear(h, p + "k"), "heads_shape"], p + "k.heads")], p + "k.t",
                 perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [linear(h, p + "v"), "heads_shape"], p + "v.heads")], p + "v.t",
                 perm=[0, 2, 1, 3])
        s = node("Mul", [node("MatMul", [q, k], p + "attn.scores"), "attn_scale"], p + "attn.scaled")
        a = node("Softmax", [node("Add", [s, "causal_mask"], p + "attn.masked")], p + "attn.probs", axis=-1)
        o = node("Transpose", [node("MatMul", [a, v], p + "attn.context")], p + "attn.merge", perm=[0, 2, 1, 3])
        o = node("Reshape", [o, "model_shape"], p + "attn.out")
        x = node("Add", [x, linear(o, p + "proj")], p + "residual1")
        f = linear(layer_norm(x, p + "ln2"), p + "fc")
        erf = node("Erf", [node("Mul", [f, "inv_sqrt2"], p + "gelu.scaled")], p + "gelu.erf")
        g = node("Mul", [node("Mul", [f, "half"], p + "gelu.half"), node("Add", [erf, "one"], p + "gelu.plus1")],
                 p + "gelu")
        x = node("Add", [x, linear(g, p + "fc2")], p + "residual2")
    logits = node("MatMul", [layer_norm(x, "ln_f"), "head.weight"], "logits")
    graph = helper.make_graph(nodes, name,
                              [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", SEQ])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", SEQ, VOCAB])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="lowbit make_gpt.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# --------------------------------------------------------------------------------------------
# Training (PyTorch)
# --------------------------------------------------------------------------------------------


def train(size: dict, tokens: np.ndarray, held: np.ndarray, threads: int, log=print) -> tuple[dict, dict]:
    """(numpy weights in `weight_names` order and layout, training record)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    d, nh, layers = size["d_model"], size["heads"], size["layers"]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.q, self.k, self.v, self.proj = (nn.Linear(d, d) for _ in range(4))
            self.fc, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x):
            b, t, _ = x.shape
            h = self.ln1(x)
            q, k, v = (m(h).view(b, t, nh, d // nh).transpose(1, 2) for m in (self.q, self.k, self.v))
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
            x = x + self.proj(o)
            return x + self.fc2(F.gelu(self.fc(self.ln2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(VOCAB, d), nn.Parameter(torch.zeros(SEQ, d))
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.ln_f, self.head = nn.LayerNorm(d), nn.Linear(d, VOCAB, bias=False)
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    # GPT-2's initialization; residual projections scaled by 1/sqrt(2 layers).
                    std = 0.02 / np.sqrt(2 * layers) if name.endswith(("proj.weight", "fc2.weight")) else 0.02
                    nn.init.normal_(p, 0.0, std)
                elif name.endswith("bias"):
                    nn.init.zeros_(p)

        def forward(self, ids):
            x = self.wte(ids) + self.wpe
            for block in self.blocks:
                x = block(x)
            return self.head(self.ln_f(x))

    model = GPT()
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and n != "wpe"]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2 or n == "wpe"]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": rest, "weight_decay": 0.0}],
                            lr=size["lr"], betas=(0.9, 0.95))
    steps, warmup = size["steps"], size["warmup"]

    def lr_at(step):  # linear warm-up, cosine decay to MIN_LR_FRACTION of the peak
        if step < warmup:
            return size["lr"] * (step + 1) / warmup
        t = (step - warmup) / max(1, steps - warmup)
        return size["lr"] * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + np.cos(np.pi * t)))

    rng = np.random.default_rng(SEED)
    losses, start = [], time.perf_counter()
    for step in range(steps):
        starts = rng.integers(0, len(tokens) - SEQ - 1, size["batch"])
        window = torch.from_numpy(np.stack([tokens[s:s + SEQ + 1] for s in starts]))
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = F.cross_entropy(model(window[:, :-1]).reshape(-1, VOCAB), window[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 100 == 0 or step == steps - 1:
            log(f"step {step:5d}  loss {np.mean(losses[-100:]):.4f}  {time.perf_counter() - start:7.1f} s")
    model.eval()

    def eval_loss(rows: np.ndarray) -> float:
        with torch.no_grad():
            logits = torch.cat([model(torch.from_numpy(rows[i:i + 64])) for i in range(0, len(rows), 64)])
        return next_token_loss(logits.numpy(), rows)

    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    weights = {"wte": sd["wte.weight"], "wpe": sd["wpe"], "ln_f.weight": sd["ln_f.weight"],
               "ln_f.bias": sd["ln_f.bias"], "head.weight": sd["head.weight"].T}
    for i in range(layers):
        for n in ("ln1", "ln2"):
            for s in ("weight", "bias"):
                weights[f"h{i}.{n}.{s}"] = sd[f"blocks.{i}.{n}.{s}"]
        for n in ("q", "k", "v", "proj", "fc", "fc2"):
            weights[f"h{i}.{n}.weight"] = sd[f"blocks.{i}.{n}.weight"].T
            weights[f"h{i}.{n}.bias"] = sd[f"blocks.{i}.{n}.bias"]
    weights = {k: np.ascontiguousarray(v) for k, v in weights.items()}
    with torch.no_grad():
        sample = model(torch.from_numpy(held[:8])).numpy()
    record = {"seconds": round(time.perf_counter() - start, 1),
              "train_loss_last_100_steps": float(np.mean(losses[-100:])),
              "train_loss": eval_loss(calibration_rows(tokens, 256, seed=SEED + 2)),
              "held_out_loss": eval_loss(held), "parameters": int(sum(p.numel() for p in model.parameters())),
              "torch": torch.__version__, "threads": threads}
    return weights, record | {"_torch_logits_sample": sample}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=list(SIZES), default="gpt")
    ap.add_argument("--out", type=Path, help="default: .cache/<size>")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (results depend on it)")
    ap.add_argument("--force", action="store_true", help="retrain even when model.json exists")
    ap.add_argument("--steps", type=int, help="optimizer steps (default: the size's)")
    a = ap.parse_args(argv)
    size = SIZES[a.size] | ({"steps": a.steps} if a.steps else {})
    out = a.out or ROOT / ".cache" / a.size
    if (out / "model.json").exists() and not a.force:
        print(f"{out / 'model.json'} exists (--force to retrain)")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    text, source = kjv_text(ROOT / ".cache")
    train_tokens, held_tokens = split_tokens(text)
    calib, held = calibration_rows(train_tokens), held_out_rows(held_tokens)
    np.save(out / "calib.npy", calib)
    np.save(out / "heldout.npy", held)
    print(f"{a.size}: {len(train_tokens)} training bytes, {len(held_tokens)} held out; training ...", flush=True)
    weights, record = train(size, train_tokens, held, a.threads)
    torch_logits = record.pop("_torch_logits_sample")
    model = gpt_onnx(weights, size["layers"], size["heads"], name=a.size)
    import onnx
    import onnxruntime as ort

    onnx.save(model, str(out / "model.onnx"))
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    ort_logits = np.concatenate([sess.run(["logits"], {"input_ids": held[i:i + 64]})[0]
                                 for i in range(0, len(held), 64)])
    record |= {"held_out_loss_onnxruntime": next_token_loss(ort_logits, held),
               "held_out_perplexity_onnxruntime": perplexity(ort_logits, held),
               "max_abs_logit_diff_onnxruntime_vs_torch": float(np.abs(ort_logits[:8] - torch_logits).max())}
    settings = size | {"seq": SEQ, "vocab": VOCAB, "weight_decay": WEIGHT_DECAY, "min_lr_fraction": MIN_LR_FRACTION,
                       "betas": [0.9, 0.95], "grad_clip": 1.0}
    info = {"size": a.size, "seed": SEED, "settings": settings,
            "text": source | {"held_out_fraction": HELD_OUT_FRACTION, "train_bytes": len(train_tokens),
                              "held_out_bytes": len(held_tokens)},
            "files": {"calib.npy": f"int64 {list(calib.shape)}", "heldout.npy": f"int64 {list(held.shape)}"},
            "training": record,
            "sha256": {f: sha256(out / f) for f in ("model.onnx", "calib.npy", "heldout.npy")}}
    (out / "model.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info["training"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
