#!/usr/bin/env python3
"""A float model over 2 GiB: lowbit loads it, quantizes it and writes it with external data,
and ONNX Runtime runs the written file; ONNX Runtime's quantize_static on the same file and data
in the same run.

    python3 benchmarks/bench_large_model.py [--layers 9 --width 8192] [--json F]

The model is generated here (seeded): `layers` blocks of MatMul [width, width] + bias + Relu, with
weights scaled so activations keep their size, saved with ONNX external data (one protobuf file
cannot hold 2 GiB). lowbit runs `ptq --per-channel --no-adaround --external-data` (AdaRound on
67M-weight layers is a separate cost question, issue 19's effort work) and also writes the float
model after its transforms with `--float-output`, which passes 2 GiB and so takes external data
automatically, as does `lowbit simplify` without the flag. For each tool the script records wall seconds and peak resident memory
(`/usr/bin/time -f %M`), the written files' sizes, and the SQNR of ONNX Runtime's outputs on the
written file against the float model on held-out rows.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "golden"))
import ort_reference as R  # noqa: E402


def make_model(path: Path, layers: int, width: int, seed: int) -> int:
    """Writes the model with external data; returns the bytes of its initializers."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "input"
    for i in range(layers):
        w = (rng.standard_normal((width, width), dtype=np.float32) * np.float32(np.sqrt(2.0 / width)))
        b = rng.standard_normal(width, dtype=np.float32) * np.float32(0.1)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"], name=f"matmul{i}"),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"add{i}")]
        x = f"a{i}"
        if i < layers - 1:
            nodes.append(helper.make_node("Relu", [x], [f"r{i}"], name=f"relu{i}"))
            x = f"r{i}"
    graph = helper.make_graph(
        nodes, "large", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=path.name + ".data", size_threshold=1024)
    del model, inits
    return layers * (width * width + width) * 4


def timed(command: list[str]) -> dict:
    """Runs `command` under /usr/bin/time: seconds, peak resident MiB, ok and the error tail."""
    started = time.monotonic()
    with tempfile.NamedTemporaryFile("r", suffix=".time") as t:
        p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", t.name, *command], capture_output=True, text=True)
        peak_kib = int((Path(t.name).read_text().strip().splitlines() or ["0"])[-1] or 0)
    row = {"seconds": time.monotonic() - started, "peak_mib": peak_kib / 1024, "ok": p.returncode == 0}
    if p.returncode != 0:
        row["error"] = (p.stderr or p.stdout)[-800:]
    return row


def files_mib(folder: Path, stem: str) -> dict:
    return {f.name: f.stat().st_size / 2**20 for f in sorted(folder.glob(stem + "*")) if f.is_file()}


def sqnr(reference: np.ndarray, actual: np.ndarray) -> float:
    noise = float(np.sum((reference - actual) ** 2))
    return float(10 * np.log10(float(np.sum(reference ** 2)) / max(noise, 1e-30)))


def ort_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def ort_quantize(model: Path, calib: np.ndarray, out: Path) -> list[str]:
    """The command running ONNX Runtime's quantize_static (MinMax, per channel, QDQ, external data)."""
    code = (
        "import sys, numpy as np\n"
        "from onnxruntime.quantization import quantize_static, QuantFormat, QuantType, CalibrationDataReader\n"
        "x = np.load(sys.argv[2])\n"
        "class Reader(CalibrationDataReader):\n"
        "    def __init__(self): self.rows = iter([{'input': x[i:i + 16]} for i in range(0, len(x), 16)])\n"
        "    def get_next(self): return next(self.rows, None)\n"
        "quantize_static(sys.argv[1], sys.argv[3], Reader(), quant_format=QuantFormat.QDQ, per_channel=True,\n"
        "                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, use_external_data_format=True)\n"
    )
    calib_path = out.with_suffix(".calib.npy")
    np.save(calib_path, calib)
    return [sys.executable, "-c", code, str(model), str(calib_path), str(out)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=9)
    ap.add_argument("--width", type=int, default=8192)
    ap.add_argument("--calib", type=int, default=64, help="calibration rows")
    ap.add_argument("--held-out", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--under-load", default="", help="what else ran on the machine meanwhile")
    ap.add_argument("--work", type=Path, help="folder for the models (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "large_model.json")
    a = ap.parse_args()
    holder = None if a.work else tempfile.TemporaryDirectory()
    work = a.work or Path(holder.name)
    work.mkdir(parents=True, exist_ok=True)
    model = work / "large.onnx"
    weight_bytes = make_model(model, a.layers, a.width, a.seed)
    rng = np.random.default_rng(a.seed + 1)
    calib = rng.standard_normal((a.calib, a.width), dtype=np.float32)
    held = rng.standard_normal((a.held_out, a.width), dtype=np.float32)
    np.save(work / "calib.npy", calib)
    reference = ort_outputs(model, held)

    rows = []
    lowbit_args = ["--per-channel", "--no-adaround", "--external-data", "--quiet"]
    out = work / "lowbit.int8.onnx"
    run = timed([str(R.lowbit_bin()), "ptq", str(model), "--calib", f"npy:{work / 'calib.npy'}", "-o", str(out),
                 "--float-output", str(work / "lowbit.float.onnx"), "--json", str(work / "lowbit.json"), *lowbit_args])
    row = {"tool": "lowbit", "args": lowbit_args + ["--float-output"], **run}
    if run["ok"]:
        row["files_mib"] = {**files_mib(work, "lowbit.int8.onnx"), **files_mib(work, "lowbit.float.onnx")}
        row["steps"] = json.loads((work / "lowbit.json").read_text()).get("steps")
        row["sqnr_db"] = sqnr(reference, ort_outputs(out, held))
        row["float_output_max_abs_error"] = float(np.max(np.abs(ort_outputs(work / "lowbit.float.onnx", held) - reference)))
    rows.append(row)
    # Without the flag: the simplified float model passes 2 GiB, so external data comes automatically.
    simple = work / "lowbit.simplified.onnx"
    run = timed([str(R.lowbit_bin()), "simplify", str(model), "-o", str(simple), "--quiet"])
    row = {"tool": "lowbit simplify", "args": ["(no --external-data)"], **run}
    if run["ok"]:
        row["files_mib"] = files_mib(work, "lowbit.simplified.onnx")
        row["max_abs_error"] = float(np.max(np.abs(ort_outputs(simple, held) - reference)))
    rows.append(row)
    peer_out = work / "ort.int8.onnx"
    run = timed(ort_quantize(model, calib, peer_out))
    row = {"tool": "ort quantize_static", "options": "MinMax, per-channel, QDQ, use_external_data_format", **run}
    if run["ok"]:
        row["files_mib"] = files_mib(work, "ort.int8.onnx")
        row["sqnr_db"] = sqnr(reference, ort_outputs(peer_out, held))
    rows.append(row)

    result = {"benchmark": "float model over 2 GiB", **R.git_checkout(),
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "under_load": a.under_load,
              "model": {"layers": a.layers, "width": a.width, "initializer_mib": weight_bytes / 2**20,
                        "calibration_rows": a.calib, "held_out_rows": a.held_out, "seed": a.seed},
              "rows": rows}
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(result, indent=1) + "\n")
    for r in rows:
        print(r["tool"], "ok" if r["ok"] else "FAILED", f"{r['seconds']:.0f} s", f"peak {r['peak_mib']:.0f} MiB",
              f"SQNR {r.get('sqnr_db', float('nan')):.1f} dB", r.get("files_mib", r.get("error", "")))
    if holder:
        holder.cleanup()
    return 0 if all(r["ok"] for r in rows if r["tool"].startswith("lowbit")) else 1


if __name__ == "__main__":
    sys.exit(main())
