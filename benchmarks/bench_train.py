#!/usr/bin/env python3
"""Float training speed: `lowbit train` vs PyTorch CPU training of the same network.

    python3 benchmarks/bench_train.py [--threads 2] [--samples 2048] [--batch-size 128]
                                      [--repeats 2] [--torch-python PATH] [--check]

Both sides train fm_resnet20 (Fashion-MNIST, [N,1,28,28]) for one epoch over the same first
--samples training images, batch 128, SGD (lr 0.1, momentum 0.9, weight decay 5e-4), BatchNorm in
training mode, no augmentation, on --threads threads, and report training samples per second
(forward + loss + backward + optimizer step; data loading, model loading and validation excluded).

lowbit: `lowbit train MODEL --train npy:x.npy,y.npy --epochs 1 --no-augment --json out.json`
with LOWBIT_THREADS=N; the JSON's `epochs[0].samples_per_second` covers the training passes only
(batch gathering included).
PyTorch: the same ONNX file converted by onnx2torch (BatchNormalization -> nn.BatchNorm2d, the
checked parameter count equals lowbit's), `torch.set_num_threads(N)`, one warm-up step excluded,
then the same samples in shuffled batches, OMP_WAIT_POLICY=PASSIVE unless set (spinning OpenMP
workers slow torch down badly on a loaded machine, see bench_ptq.py). PyTorch runs in its own venv (default
.cache/peers-venv, `pip install torch onnx2torch numpy` from PyPI) so the project's Python stays
untouched; this script starts it as a subprocess (`--torch-worker`).

Each side is measured --repeats times and the best run kept; the ratio is PyTorch samples/s over
lowbit samples/s (target: <= 2, --check exits 1 when missed). Writes benchmarks/results/train.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "assets" / "models" / "fm_resnet20.onnx"
TARGET_RATIO = 2.0


def torch_worker(args) -> None:
    """Runs inside the torch venv: trains and prints one JSON line."""
    import numpy as np
    import onnx
    import torch
    from onnx2torch import convert

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.from_numpy(np.load(args.x))
    y = torch.from_numpy(np.load(args.y))
    proto = onnx.load(str(args.model))
    # The export shares two zero BatchNorm biases through Identity nodes; give each its own
    # initializer (as lowbit's simplification does) so that all 21 become nn.BatchNorm2d.
    inits = {t.name: t for t in proto.graph.initializer}
    for node in [n for n in proto.graph.node if n.op_type == "Identity" and n.input[0] in inits]:
        copy = onnx.TensorProto()
        copy.CopyFrom(inits[node.input[0]])
        copy.name = node.output[0]
        proto.graph.initializer.append(copy)
        proto.graph.node.remove(node)
    model = convert(proto)
    model.train()
    params = sum(p.numel() for p in model.parameters())
    bns = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return float(loss)

    step(x[: args.batch_size], y[: args.batch_size])  # warm-up, excluded
    runs = []
    for r in range(args.repeats):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(r))
        start = time.perf_counter()
        for i in range(0, len(x), args.batch_size):
            idx = order[i:i + args.batch_size]
            step(x[idx], y[idx])
        runs.append(len(x) / (time.perf_counter() - start))
    print(json.dumps({"samples_per_second": max(runs), "runs": runs, "parameters": params,
                      "batchnorm_layers": bns, "torch": torch.__version__,
                      "threads": torch.get_num_threads()}))


def bench_lowbit(binary, x_path, y_path, args):
    sys.path.insert(0, str(REPO / "tests" / "golden"))
    import ort_reference as R
    env = {"LOWBIT_THREADS": str(args.threads)}
    runs = []
    with tempfile.TemporaryDirectory(prefix="lowbit-bench-train-") as tmp:
        for r in range(args.repeats):
            out, js = Path(tmp) / "t.onnx", Path(tmp) / "t.json"
            proc = R.run_lowbit(["train", MODEL, "--train", f"npy:{x_path},{y_path}", "--epochs", "1",
                                 "--batch-size", str(args.batch_size), "--lr", "0.1", "--momentum", "0.9",
                                 "--weight-decay", "5e-4", "--no-augment", "--seed", str(r),
                                 "-o", out, "--json", js, "--quiet"],
                                env=env, binary=binary, timeout=7200)
            if proc.returncode != 0 or not js.is_file():
                raise RuntimeError(R.describe_proc(proc, limit=1500))
            rep = json.loads(js.read_text())
            runs.append(float(rep["epochs"][0]["samples_per_second"]))
            threads = rep["threads"]
    return {"samples_per_second": max(runs), "runs": runs, "threads": threads}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--samples", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--torch-python", default=str(REPO / ".cache" / "peers-venv" / "bin" / "python"))
    p.add_argument("--check", action="store_true")
    p.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--x", help=argparse.SUPPRESS)
    p.add_argument("--y", help=argparse.SUPPRESS)
    p.add_argument("--model", default=str(MODEL), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.torch_worker:
        torch_worker(args)
        return 0

    import numpy as np
    sys.path.insert(0, str(REPO / "tests" / "golden"))
    import ort_reference as R
    binary = R.lowbit_bin()
    x, y = R.load_fashion_mnist("train", limit=args.samples)
    with tempfile.TemporaryDirectory(prefix="bench-train-data-") as tmp:
        x_path, y_path = Path(tmp) / "x.npy", Path(tmp) / "y.npy"
        np.save(x_path, np.ascontiguousarray(x, dtype=np.float32))
        np.save(y_path, y.astype(np.int64))
        torch_proc = subprocess.run(
            [args.torch_python, __file__, "--torch-worker", "--threads", str(args.threads), "--x", str(x_path),
             "--y", str(y_path), "--batch-size", str(args.batch_size), "--repeats", str(args.repeats)],
            capture_output=True, text=True,
            env={"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "OMP_NUM_THREADS": str(args.threads)})
        if torch_proc.returncode != 0:
            print(torch_proc.stderr[-3000:], file=sys.stderr)
            print(f"PyTorch worker failed (is torch + onnx2torch installed in {args.torch_python}?)",
                  file=sys.stderr)
            return 2
        torch_result = json.loads(torch_proc.stdout.strip().splitlines()[-1])
        lowbit_result = bench_lowbit(binary, x_path, y_path, args)

    ratio = torch_result["samples_per_second"] / lowbit_result["samples_per_second"]
    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "model": "fm_resnet20", "samples": int(len(x)), "batch_size": args.batch_size,
        "threads": args.threads, "lowbit": lowbit_result, "pytorch": torch_result,
        "pytorch_over_lowbit": ratio, "target_ratio": TARGET_RATIO,
        "load_average": os.getloadavg(),
    }
    out = REPO / "benchmarks" / "results" / "train.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"fm_resnet20 training, batch {args.batch_size}, {len(x)} samples, {args.threads} threads")
    print(f"  lowbit   {lowbit_result['samples_per_second']:8.1f} samples/s  (runs {lowbit_result['runs']})")
    print(f"  PyTorch  {torch_result['samples_per_second']:8.1f} samples/s  (torch {torch_result['torch']}, "
          f"{torch_result['parameters']} parameters, {torch_result['batchnorm_layers']} BatchNorm2d)")
    print(f"  PyTorch / lowbit = {ratio:.2f}x (target <= {TARGET_RATIO}x)  -> {out.relative_to(REPO)}")
    if args.check and ratio > TARGET_RATIO:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
