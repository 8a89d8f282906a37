#!/usr/bin/env python3
"""Deployment (issue 22): do lowbit's QDQ files run in real runtimes, agree with lowbit's own
simulation, and run on integer kernels? ONNX Runtime (CPU EP) and OpenVINO (CPU plugin).

Files per model (`--settings`): the float model (`fp32`); lowbit's default pipeline (or
`--effort fast`) at W8A8 per tensor (`lowbit_pt_w8a8`), W8A8 per channel (`lowbit_pc_w8a8`) and
W4A8 per channel (`lowbit_pc_w4a8`); ONNX Runtime's own `quantize_static` after
`quant_pre_process` (QDQ, MinMax, per channel, QUInt8 activations, QInt8 weights;
`ort_pc_w8a8`) as the control. Not in the default list: `lowbit_pt_w8a8_openvino` and
`lowbit_pc_w8a8_openvino` (`lowbit ptq --target openvino`). `--lowbit-args "..."` adds arguments
to every `lowbit ptq`. The lowbit binary ($LOWBIT_BIN or .build/release/lowbit) is copied once at
the start and the copy runs every command, so a rebuild during a long run cannot mix builds
(its sha256 and mtime are recorded).

Data (`--models`):
  - fm_resnet20, fm_mobilenetv2, fm_inception: calibration `fashion-mnist:train:512` (ORT's
    quantizer gets the same 512 images, normalized as the tests do), judged on the 10,000 test
    images (`ort_reference.load_fashion_mnist_test`);
  - resnet18 and resnet50 (filled with seeded weights, seed 0, into .cache/models) at 224 and
    efficientnet_lite2 at 260: the shared photos split by `photos.photo_split` (seed 0),
    calibration on the 80 centre crops of the calibration half, judged on the held-out half as
    TenCrop views (800 inputs).

Per file and runtime (ONNX Runtime: CPUExecutionProvider, default graph optimizations; OpenVINO:
CPU, default inference precision, static batch):
  - loads or not (the error text);
  - top-1 agreement (%) with lowbit's simulation (`lowbit run FILE --save-outputs`) and with the
    same runtime's FP32 run of the float model (OpenVINO's FP32 reference is compiled with
    INFERENCE_PRECISION_HINT=f32: its default on a bf16-capable CPU is bf16); top-1 against the
    labels for Fashion-MNIST;
  - ONNX Runtime against itself: its optimized run (QDQ fused into integer kernels) vs the same
    file with graph optimizations off (ORT_DISABLE_ALL: every Q / DQ and float op as written,
    its own float simulation), the agreement a float simulator can hope for on these inputs;
  - integer kernels: ONNX Runtime's profile (SessionOptions.enable_profiling, one batch) lists
    the kernel of every node after its QDQ fusions: QLinearConv / QLinearMatMul / QGemm /
    ConvInteger / MatMulInteger count as integer, Conv / FusedConv / Gemm / MatMul / FusedMatMul
    and MatMulNBits (weight-only int4: float activations) as float. OpenVINO: `compiled_model.get_runtime_model()`, every
    Convolution / Deconvolution / FullyConnected / MatMul node; integer when its runtimePrecision
    is u8 / i8 and its data input is u8 / i8, float otherwise (f32, bf16, or f32/bf16 activations
    with compressed int4 weights). The names of the float ones are listed.
Speed (`--speed-settings`, default fp32, lowbit W8A8 PT / PC, ORT int8): `--threads` (2) threads
in both runtimes, batch 1 latency (median ms of `--runs` timed calls after `--warmup`) and batch
32 (median ms per batch of `--runs-batch` timed rounds). ONNX Runtime: intra_op_num_threads=2,
inter_op_num_threads=1, one session.run per call. OpenVINO: INFERENCE_NUM_THREADS=2; batch 1
with PERFORMANCE_HINT=LATENCY and one synchronous request; batch 32 with
PERFORMANCE_HINT=THROUGHPUT and an AsyncInferQueue of the plugin's optimal number of requests
(one round = that many batches in flight; ms per batch = round time / requests). The FP32 file
runs in OpenVINO with the f32 hint, and once more with the default hint (bf16 here) as
`openvino_default`. File sizes in bytes, as a ratio to the FP32 file, with the stored
weight types and the opset.

    python3 benchmarks/bench_deploy.py --under-load "test suite running"            # all
    python3 benchmarks/bench_deploy.py --models fm_resnet20 --effort fast \\
        --settings lowbit_pt_w8a8 ort_pc_w8a8 --runs 10 --runs-batch 3              # quick
    python3 benchmarks/bench_deploy.py --table                                       # print
    python3 benchmarks/bench_deploy.py --models resnet18 --merge                     # add a model

Writes `benchmarks/results/deploy.json` after every model (commit, dirty flag, binary vs sources
mtimes, versions, settings, --under-load, every row); with --merge the models already in the
file and not run now are kept. Needs onnx, onnxruntime, openvino, numpy, pillow.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "golden"))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "benchmarks" / "peers"))
import ort_reference as R  # noqa: E402

MODELS = ("fm_resnet20", "fm_mobilenetv2", "fm_inception", "resnet18", "resnet50", "efficientnet_lite2")
PHOTO_SIZE = {"resnet18": 224, "resnet50": 224, "efficientnet_lite2": 260}
SEEDED = ("resnet18", "resnet50")  # shared graphs filled with seeded weights
# setting -> (tool, extra `lowbit ptq` args or ORT options)
SETTINGS = {
    "fp32": ("float", None),
    "lowbit_pt_w8a8": ("lowbit", []),
    "lowbit_pc_w8a8": ("lowbit", ["--per-channel"]),
    "lowbit_pc_w4a8": ("lowbit", ["--per-channel", "--w-bits", "4"]),
    "ort_pc_w8a8": ("ort", {"per_channel": True, "method": "minmax", "w_bits": 8}),
    # Not run by default: lowbit's files for OpenVINO (`--target openvino`: activations, the
    # input included, per tensor; weights of 8 bits only).
    "lowbit_pt_w8a8_openvino": ("lowbit", ["--target", "openvino"]),
    "lowbit_pc_w8a8_openvino": ("lowbit", ["--per-channel", "--target", "openvino"]),
}
DEFAULT_SETTINGS = ("lowbit_pt_w8a8", "lowbit_pc_w8a8", "lowbit_pc_w4a8", "ort_pc_w8a8")
SPEED_SETTINGS = ("fp32", "lowbit_pt_w8a8", "lowbit_pc_w8a8", "ort_pc_w8a8")
LABEL = {"fp32": "FP32", "lowbit_pt_w8a8": "lowbit W8A8 PT", "lowbit_pc_w8a8": "lowbit W8A8 PC",
         "lowbit_pc_w4a8": "lowbit W4A8 PC", "ort_pc_w8a8": "ORT W8A8 PC",
         "lowbit_pt_w8a8_openvino": "lowbit W8A8 PT --target openvino",
         "lowbit_pc_w8a8_openvino": "lowbit W8A8 PC --target openvino"}

# ONNX Runtime kernels (op_name in its profile) doing the heavy compute.
ORT_INT_OPS = {"QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger",
               "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QLinearConvTranspose",
               "QAttention", "DynamicQuantizeLSTM"}
ORT_FLOAT_OPS = {"Conv", "FusedConv", "NhwcFusedConv", "NhwcConv", "ConvTranspose", "Gemm",
                 "FusedGemm", "MatMul", "FusedMatMul", "MatMulNBits", "Attention"}
# OpenVINO CPU runtime-graph layer types doing the heavy compute.
OV_COMPUTE = {"Convolution", "Deconvolution", "FullyConnected", "MatMul", "GroupConvolution"}
INT_PRECISIONS = {"u8", "i8"}

DEFAULT_JSON = ROOT / "benchmarks" / "results" / "deploy.json"


def log(msg: str):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(1) == b.argmax(1)).mean() * 100)


def err_text(e: BaseException, limit: int = 800) -> str:
    return f"{type(e).__name__}: {e}".strip()[:limit]


# ----------------------------------------------------------------------------------------------
# ONNX Runtime
# ----------------------------------------------------------------------------------------------


def ort_session(path: Path, threads: int, profile_prefix: str | None = None, optimize: bool = True):
    """optimize=False: no graph optimizations (ORT_DISABLE_ALL), so no QDQ fusion: every
    QuantizeLinear / DequantizeLinear and float op runs as written, ONNX Runtime's own float
    simulation of the file."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def ort_logits(sess, x: np.ndarray, batch: int) -> np.ndarray:
    name_in, name_out = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    return np.concatenate([sess.run([name_out], {name_in: x[i:i + batch]})[0]
                           for i in range(0, len(x), batch)])


def ort_kernels(path: Path, x: np.ndarray, threads: int, workdir: Path) -> dict:
    """Which kernel ran each node: one profiled batch. {"integer", "float", "float_names",
    "integer_ops", "float_ops", "ops" (every kernel's count)}."""
    sess = ort_session(path, threads, profile_prefix=str(workdir / "ort_profile"))
    name_in = sess.get_inputs()[0].name
    sess.run(None, {name_in: x})
    prof = Path(sess.end_profiling())
    try:
        events = json.loads(prof.read_text())
    finally:
        prof.unlink(missing_ok=True)
    nodes = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            nodes[e["name"][: -len("_kernel_time")]] = e.get("args", {}).get("op_name")
    ops = collections.Counter(nodes.values())
    integer = {n: op for n, op in nodes.items() if op in ORT_INT_OPS}
    flt = {n: op for n, op in nodes.items() if op in ORT_FLOAT_OPS}
    return {"integer": len(integer), "float": len(flt),
            "float_names": sorted(f"{n} ({op})" for n, op in flt.items()),
            "integer_ops": dict(collections.Counter(integer.values())),
            "float_ops": dict(collections.Counter(flt.values())), "ops": dict(ops)}


# ----------------------------------------------------------------------------------------------
# OpenVINO
# ----------------------------------------------------------------------------------------------


def ov_compile(path: Path, batch: int, config: dict):
    """Compile `path` on the CPU with the first input's batch dimension fixed to `batch`."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    shape = model.input(0).get_partial_shape()
    shape[0] = batch
    model.reshape({model.input(0): shape})
    return core.compile_model(model, "CPU", config)


def _ri(op, key: str) -> str:
    info = op.get_rt_info()
    return info[key].astype(str) if key in info else ""


def ov_kernels(compiled) -> dict:
    """Precision of every convolution / matmul in the compiled (runtime) graph."""
    integer, flt, kinds = [], [], collections.Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        layer = _ri(op, "layerType")
        if layer not in OV_COMPUTE:
            continue
        prec = _ri(op, "runtimePrecision")
        data_in = str(op.input(0).get_element_type().get_type_name()) if op.get_input_size() else ""
        prim = _ri(op, "primitiveType")
        weights = ""
        if op.get_input_size() > 1:
            weights = str(op.input(1).get_element_type().get_type_name())
        desc = {"name": op.get_friendly_name(), "layer": layer, "runtimePrecision": prec,
                "input": data_in, "weights": weights, "primitive": prim}
        if prec in INT_PRECISIONS and data_in in INT_PRECISIONS:
            integer.append(desc)
            kinds[f"{layer} {prec}"] += 1
        else:
            flt.append(desc)
            kinds[f"{layer} {prec} (input {data_in}, weights {weights}, {prim})"] += 1
    return {"integer": len(integer), "float": len(flt),
            "float_names": [f"{d['name']} ({d['layer']} {d['runtimePrecision']}, input {d['input']}, "
                            f"weights {d['weights']}, {d['primitive']})" for d in flt],
            "kinds": dict(kinds)}


def ov_logits(compiled, x: np.ndarray, batch: int) -> np.ndarray:
    """Runs a model compiled for a static `batch`; the last partial batch is zero-padded."""
    req = compiled.create_infer_request()
    out = compiled.output(0)
    parts = []
    for i in range(0, len(x), batch):
        part = x[i:i + batch]
        n = len(part)
        if n < batch:
            part = np.concatenate([part, np.zeros((batch - n,) + part.shape[1:], part.dtype)])
        parts.append(np.array(req.infer({0: np.ascontiguousarray(part)})[out])[:n])
    return np.concatenate(parts)


def ov_config(threads: int, hint: str | None = None, precision: str | None = None) -> dict:
    cfg = {"INFERENCE_NUM_THREADS": threads}
    if hint:
        cfg["PERFORMANCE_HINT"] = hint
    if precision:
        cfg["INFERENCE_PRECISION_HINT"] = precision
    return cfg


# ----------------------------------------------------------------------------------------------
# Speed
# ----------------------------------------------------------------------------------------------


def timed(fn, warmup: int, runs: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return times


def summary(times: list[float], per: int = 1) -> dict:
    return {"median_ms": statistics.median(times) / per, "min_ms": min(times) / per,
            "runs": len(times), "all_ms": [round(t / per, 3) for t in times]}


def speed_ort(path: Path, x: np.ndarray, a) -> dict:
    res = {}
    for batch, runs in ((1, a.runs), (32, a.runs_batch)):
        sess = ort_session(path, a.threads)
        feed = {sess.get_inputs()[0].name: np.ascontiguousarray(x[:batch])}
        s = summary(timed(lambda: sess.run(None, feed), a.warmup if batch == 1 else a.warmup_batch, runs))
        s["images_per_second"] = batch * 1000 / s["median_ms"]
        res[f"batch{batch}"] = s
    return res


def speed_ov(path: Path, x: np.ndarray, a, precision: str | None = None) -> dict:
    import openvino as ov

    res = {}
    cm = ov_compile(path, 1, ov_config(a.threads, "LATENCY", precision))
    req = cm.create_infer_request()
    one = np.ascontiguousarray(x[:1])
    s = summary(timed(lambda: req.infer({0: one}), a.warmup, a.runs))
    s["images_per_second"] = 1000 / s["median_ms"]
    s["config"] = ov_config(a.threads, "LATENCY", precision)
    res["batch1"] = s
    del req, cm
    cm = ov_compile(path, 32, ov_config(a.threads, "THROUGHPUT", precision))
    nreq = int(cm.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    streams = str(cm.get_property("NUM_STREAMS"))
    queue = ov.AsyncInferQueue(cm, nreq)
    b32 = np.ascontiguousarray(x[:32])

    def round_():
        for _ in range(nreq):
            queue.start_async({0: b32})
        queue.wait_all()

    s = summary(timed(round_, a.warmup_batch, a.runs_batch), per=nreq)
    s["images_per_second"] = 32 * 1000 / s["median_ms"]
    s["config"] = ov_config(a.threads, "THROUGHPUT", precision) | {"requests": nreq, "streams": streams}
    res["batch32"] = s
    return res


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


def file_facts(path: Path) -> dict:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    opset = {o.domain or "ai.onnx": o.version for o in m.opset_import}
    stored = R.qdq_stored_types(m)
    convs = sum(1 for n in m.graph.node if n.op_type in ("Conv", "ConvTranspose"))
    matmuls = sum(1 for n in m.graph.node if n.op_type in ("Gemm", "MatMul"))
    return {"size_bytes": path.stat().st_size, "opset": opset, "stored_types": stored,
            "initializer_types": R.initializer_types(m), "conv_nodes": convs,
            "gemm_matmul_nodes": matmuls}


def run_lowbit_ptq(model: Path, calib_spec: str, out: Path, extra: list[str], a) -> dict:
    cmd = ["ptq", str(model), "--calib", calib_spec, "-o", str(out),
           "--json", str(out.with_suffix(".json")), "--quiet"] + extra
    if a.effort:
        cmd += ["--effort", a.effort]
    cmd += a.lowbit_args
    t = time.perf_counter()
    proc = R.run_lowbit(cmd, env={"LOWBIT_THREADS": str(a.threads)}, timeout=a.timeout, binary=a.binary)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        return {"ok": False, "reason": (proc.stderr or "").strip()[-800:], "command": ["lowbit"] + cmd}
    report = json.loads(out.with_suffix(".json").read_text())
    return {"ok": True, "seconds": seconds, "command": ["lowbit"] + cmd,
            "steps": [{"step": s["step"], "seconds": s["seconds"]} for s in report.get("steps", [])]}


def lowbit_sim(path: Path, x_path: Path, workdir: Path, a) -> dict:
    out = workdir / f"{path.stem}.sim.npz"
    proc = R.run_lowbit(["run", str(path), "--data", f"npy:{x_path}", "--save-outputs", str(out),
                         "--quiet"], env={"LOWBIT_THREADS": str(a.threads)}, timeout=a.timeout,
                        binary=a.binary)
    if proc.returncode != 0:
        return {"ok": False, "reason": (proc.stderr or "").strip()[-800:]}
    outs = R.load_saved_outputs(out)
    logits = next(iter(outs.values()))
    out.unlink(missing_ok=True)
    return {"ok": True, "logits": logits}


# ----------------------------------------------------------------------------------------------
# Data per model
# ----------------------------------------------------------------------------------------------


def model_data(name: str, workdir: Path, a) -> dict:
    """{"model": float file, "calib_spec": for lowbit, "calib": array for ORT, "x": judged inputs,
    "labels": or None, "batch": evaluation batch, "description"}."""
    if name.startswith("fm_"):
        x, labels = R.load_fashion_mnist("test", a.test_limit)
        calib, _ = R.load_fashion_mnist("train", a.calib_size)
        return {"model": R.model_path(name), "calib_spec": f"fashion-mnist:train:{a.calib_size}",
                "calib": calib, "x": x, "labels": labels, "batch": 100, "ort_calib_batch": 64,
                "description": f"calibration fashion-mnist:train:{a.calib_size}; judged on the first "
                               f"{len(x)} Fashion-MNIST test images"}
    from photos import photo_split

    size = PHOTO_SIZE[name]
    model = R.filled_model(name, seed=0) if name in SEEDED else R.models_dir() / f"{name}.onnx"
    calib, _ = photo_split(size, seed=0, crops=1)
    _, held = photo_split(size, seed=0, crops=a.held_out_crops)
    calib_path = workdir / "calib.npy"
    np.save(calib_path, calib)
    return {"model": model, "calib_spec": f"npy:{calib_path}", "calib": calib, "x": held,
            "labels": None, "batch": 16, "ort_calib_batch": 16,
            "description": f"photos at {size} (split seed 0): calibration {len(calib)} centre crops, "
                           f"judged on {len(held)} held-out inputs ({a.held_out_crops} crops per photo)"}


# ----------------------------------------------------------------------------------------------
# One model
# ----------------------------------------------------------------------------------------------


def bench_model(name: str, a, run_meta: dict) -> dict:
    import ort_ptq

    keep = a.keep / name if a.keep else None
    with tempfile.TemporaryDirectory(prefix=f"bench-deploy-{name}-") as tmp:
        tmp = Path(tmp)
        work = keep or tmp
        work.mkdir(parents=True, exist_ok=True)
        d = model_data(name, tmp, a)
        x = d["x"]
        x_path = tmp / "judge.npy"
        np.save(x_path, x)
        log(f"{name}: {d['description']}")
        entry = {"model": name, "float_file": str(d["model"]), "data": d["description"],
                 "judged_inputs": len(x), "run": run_meta | {"loadavg_start": os.getloadavg()},
                 "rows": []}

        # References: each runtime's FP32 run of the float model.
        t = time.perf_counter()
        ref_ort = ort_logits(ort_session(d["model"], a.threads), x, d["batch"])
        ref_ov = ov_logits(ov_compile(d["model"], d["batch"], ov_config(a.threads, precision="f32")),
                           x, d["batch"])
        ref_ov_default = ov_logits(ov_compile(d["model"], d["batch"], ov_config(a.threads)), x, d["batch"])
        entry["reference"] = {
            "ort_fp32_top1": agreement_labels(ref_ort, d["labels"]),
            "openvino_fp32_top1": agreement_labels(ref_ov, d["labels"]),
            "openvino_fp32_vs_ort_fp32": agreement(ref_ov, ref_ort),
            "openvino_default_precision_vs_f32": agreement(ref_ov_default, ref_ov),
            "seconds": time.perf_counter() - t,
        }
        log(f"  references: ORT FP32 top-1 {entry['reference']['ort_fp32_top1']}, OpenVINO f32 vs ORT "
            f"{entry['reference']['openvino_fp32_vs_ort_fp32']:.2f}%, OpenVINO default (bf16) vs f32 "
            f"{entry['reference']['openvino_default_precision_vs_f32']:.2f}%")
        fp32_size = d["model"].stat().st_size

        for setting in ["fp32"] + [s for s in a.settings if s != "fp32"]:
            tool, opts = SETTINGS[setting]
            row = {"setting": setting, "tool": tool}
            if setting == "fp32":
                path = Path(d["model"])
                row["ok"] = True
            else:
                path = work / f"{setting}.onnx"
                if a.reuse and path.is_file():
                    row.update({"ok": True, "reused": True})
                elif tool == "lowbit":
                    row.update(run_lowbit_ptq(d["model"], d["calib_spec"], path, opts, a))
                else:
                    res = ort_ptq.quantize(d["model"], path, d["calib"], method=opts["method"],
                                           w_bits=opts["w_bits"], per_channel=opts["per_channel"],
                                           batch_size=d["ort_calib_batch"])
                    row.update(res)
                if not row.get("ok"):
                    log(f"  {setting}: quantization failed: {row.get('reason')}")
                    entry["rows"].append(row)
                    continue
                if "seconds" in row:
                    log(f"  {setting}: quantized in {row['seconds']:.0f} s")
            row["file"] = str(path) if (keep or setting == "fp32") else path.name
            row.update(file_facts(path))
            row["size_ratio"] = row["size_bytes"] / fp32_size

            if setting != "fp32":
                sim = lowbit_sim(path, x_path, tmp, a)
                if sim["ok"]:
                    row["sim"] = {"ok": True, "agree_fp32": agreement(sim["logits"], ref_ort),
                                  "top1": agreement_labels(sim["logits"], d["labels"])}
                else:
                    row["sim"] = {"ok": False, "reason": sim["reason"]}
            else:
                sim = {"ok": False}

            # ONNX Runtime
            r, y_ort = {}, None
            try:
                sess = ort_session(path, a.threads)
                r["loads"] = True
            except Exception as e:
                r.update({"loads": False, "error": err_text(e)})
            if r["loads"]:
                try:
                    y_ort = ort_logits(sess, x, d["batch"])
                    r["top1"] = agreement_labels(y_ort, d["labels"])
                    r["agree_fp32"] = agreement(y_ort, ref_ort)
                    if sim["ok"]:
                        r["agree_sim"] = agreement(y_ort, sim["logits"])
                    if setting != "fp32":
                        # ONNX Runtime against itself: its integer kernels vs its own float
                        # simulation of the same file, the bound any simulator can expect.
                        y_float = ort_logits(ort_session(path, a.threads, optimize=False), x, d["batch"])
                        r["agree_own_float_qdq"] = agreement(y_ort, y_float)
                        if sim["ok"]:
                            r["own_float_qdq_agree_sim"] = agreement(y_float, sim["logits"])
                    r["kernels"] = ort_kernels(path, x[: min(len(x), 4)], a.threads, tmp)
                except Exception as e:
                    r.update({"runs": False, "error": err_text(e)})
                del sess
            row["ort"] = r

            # OpenVINO
            o = {"config": ov_config(a.threads, precision="f32" if setting == "fp32" else None)}
            try:
                cm = ov_compile(path, d["batch"], o["config"])
                o["loads"] = True
            except Exception as e:
                o.update({"loads": False, "error": err_text(e)})
            if o["loads"]:
                try:
                    y = ov_logits(cm, x, d["batch"])
                    o["top1"] = agreement_labels(y, d["labels"])
                    o["agree_fp32"] = agreement(y, ref_ov)
                    if y_ort is not None:
                        o["agree_ort"] = agreement(y, y_ort)  # the same file in ONNX Runtime
                    if sim["ok"]:
                        o["agree_sim"] = agreement(y, sim["logits"])
                    o["kernels"] = ov_kernels(cm)
                except Exception as e:
                    o.update({"runs": False, "error": err_text(e)})
                del cm
            row["openvino"] = o
            log("  " + row_line(row))

            if setting in a.speed_settings and not a.no_speed:
                sp = {}
                try:
                    sp["ort"] = speed_ort(path, x, a) if r.get("loads") else None
                except Exception as e:
                    sp["ort"] = {"error": err_text(e)}
                try:
                    sp["openvino"] = (speed_ov(path, x, a, precision="f32" if setting == "fp32" else None)
                                      if o.get("loads") else None)
                    if setting == "fp32" and o.get("loads"):
                        sp["openvino_default"] = speed_ov(path, x, a)
                except Exception as e:
                    sp["openvino"] = {"error": err_text(e)}
                row["speed"] = sp
                log("  " + speed_line(setting, sp))
            entry["rows"].append(row)
        entry["run"]["loadavg_end"] = os.getloadavg()
        entry["run"]["checkout_binary_mtime_end"] = binary_mtime()
        return entry


def binary_mtime() -> str | None:
    b = R.lowbit_bin()
    if not b.is_file():
        return None
    return datetime.datetime.fromtimestamp(b.stat().st_mtime, datetime.timezone.utc).isoformat(timespec="seconds")


def agreement_labels(logits: np.ndarray, labels) -> float | None:
    return None if labels is None else float((logits.argmax(1) == labels).mean() * 100)


# ----------------------------------------------------------------------------------------------
# Printing
# ----------------------------------------------------------------------------------------------


def _pct(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _rt(r: dict | None) -> str:
    if not r:
        return "-"
    if not r.get("loads"):
        return "LOAD FAILED"
    if r.get("runs") is False:
        return "RUN FAILED"
    k = r.get("kernels", {})
    return f"{_pct(r.get('agree_sim'))} | {_pct(r.get('agree_fp32'))} | {k.get('integer', '?')}/{k.get('float', '?')}"


def row_line(row: dict) -> str:
    return (f"{LABEL.get(row['setting'], row['setting'])}: {row['size_bytes']} B ({row['size_ratio']:.3f}), "
            f"sim vs fp32 {_pct(row.get('sim', {}).get('agree_fp32'))}; ORT {_rt(row.get('ort'))}; "
            f"OpenVINO {_rt(row.get('openvino'))}  (agree sim | agree fp32 | int/float)")


def _ms(s) -> str:
    if not s:
        return "-"
    if "error" in s:
        return "error"
    return f"{s['batch1']['median_ms']:.2f} / {s['batch32']['median_ms']:.1f}"


def speed_line(setting: str, sp: dict) -> str:
    return (f"{LABEL.get(setting, setting)} speed (ms batch 1 / ms per batch 32): ORT {_ms(sp.get('ort'))}, "
            f"OpenVINO {_ms(sp.get('openvino'))}"
            + (f", OpenVINO default precision {_ms(sp.get('openvino_default'))}" if sp.get("openvino_default") else ""))


def weight_types(row: dict) -> str:
    w = row.get("stored_types", {}).get("weights", {})
    return ",".join(f"{k.lower()}x{v}" for k, v in sorted(w.items())) or "float"


def print_table(result: dict):
    print(f"commit {result['commit']['head'][:12]}{' (dirty)' if result['commit']['dirty'] else ''}, "
          f"binary older than sources: {result['commit'].get('binary_older_than_sources')}; "
          f"onnxruntime {result['env']['onnxruntime']}, openvino {result['env']['openvino']}")
    for name, e in result["models"].items():
        ref = e["reference"]
        print(f"\n## {name}: {e['data']}")
        print(f"run: {e['run'].get('date')} effort={e['run'].get('effort') or 'default'} "
              f"under load: {e['run'].get('under_load')!r}, loadavg {e['run'].get('loadavg_start')}")
        print(f"FP32: ORT top-1 {_pct(ref['ort_fp32_top1'])}, OpenVINO f32 top-1 {_pct(ref['openvino_fp32_top1'])}, "
              f"OpenVINO f32 vs ORT {ref['openvino_fp32_vs_ort_fp32']:.2f}%, OpenVINO default (bf16) vs f32 "
              f"{ref['openvino_default_precision_vs_f32']:.2f}%")
        hdr = ("| file | bytes | x FP32 | weights (opset) | top-1 sim | sim vs FP32 | ORT: top-1 | vs sim | vs FP32 "
               "| int/float | ORT vs its own float QDQ | OV: top-1 | vs sim | vs FP32 | int/float |")
        print(hdr)
        print("|" + " --- |" * (hdr.count("|") - 1))
        for r in e["rows"]:
            if "size_bytes" not in r:
                print(f"| {LABEL.get(r['setting'])} | quantization failed: {r.get('reason', '')[:120]} |")
                continue
            sim = r.get("sim", {})
            label = LABEL.get(r["setting"], r["setting"])
            cells = [label, str(r["size_bytes"]), f"{r['size_ratio']:.3f}",
                     f"{weight_types(r)} ({r['opset'].get('ai.onnx')})",
                     _pct(sim.get("top1")) if sim.get("ok") else ("-" if not sim else "FAILED"),
                     _pct(sim.get("agree_fp32"))]
            for rt in ("ort", "openvino"):
                x = r.get(rt, {})
                blank = [""] * (4 if rt == "ort" else 3)
                if not x.get("loads"):
                    cells += ["LOAD FAILED"] + blank
                elif x.get("runs") is False:
                    cells += ["RUN FAILED"] + blank
                else:
                    k = x.get("kernels", {})
                    cells += [_pct(x.get("top1")), _pct(x.get("agree_sim")), _pct(x.get("agree_fp32")),
                              f"{k.get('integer')}/{k.get('float')}"]
                    if rt == "ort":
                        cells.append(_pct(x.get("agree_own_float_qdq")))
            print("| " + " | ".join(cells) + " |")
        speed = [r for r in e["rows"] if r.get("speed")]
        if speed:
            print("\n| file | ORT b1 ms | ORT b32 ms | OV b1 ms | OV b32 ms | OV b32 img/s | ORT b32 img/s |")
            print("| --- | --- | --- | --- | --- | --- | --- |")
            for r in speed:
                for key, label in (("", ""), ("_default", " (OV default precision)")):
                    sp = r["speed"]
                    if key and not sp.get("openvino_default"):
                        continue
                    o = sp.get("openvino" + key) or {}
                    t = {} if key else (sp.get("ort") or {})

                    def g(d, b, f="median_ms", fmt="{:.2f}"):
                        return fmt.format(d[b][f]) if d and b in d else "-"
                    print(f"| {LABEL.get(r['setting'])}{label} | {g(t, 'batch1')} | {g(t, 'batch32', fmt='{:.1f}')} | "
                          f"{g(o, 'batch1')} | {g(o, 'batch32', fmt='{:.1f}')} | "
                          f"{g(o, 'batch32', 'images_per_second', '{:.0f}')} | "
                          f"{g(t, 'batch32', 'images_per_second', '{:.0f}')} |")
        falls = []
        for r in e["rows"]:
            if r["setting"] == "fp32":
                continue
            for rt, label in (("ort", "ORT"), ("openvino", "OpenVINO")):
                x = r.get(rt, {})
                if not x.get("loads"):
                    falls.append(f"{LABEL.get(r['setting'])} / {label}: does not load: {x.get('error')}")
                elif x.get("kernels", {}).get("float"):
                    names = x["kernels"]["float_names"]
                    shown = "; ".join(names[:4]) + (f"; ... ({len(names)} in all)" if len(names) > 4 else "")
                    falls.append(f"{LABEL.get(r['setting'])} / {label}: {len(names)} float: {shown}")
        if falls:
            print("\nfloat fallbacks / failures:")
            for f in falls:
                print(f"- {f}")


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def checkout() -> dict:
    c = R.git_checkout()
    b = R.lowbit_bin()

    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    sources = [ROOT / f for f in git("ls-files", "Sources", "Package.swift").splitlines()]
    newest = max(((f.stat().st_mtime, f) for f in sources if f.is_file()), default=(0, None))
    iso = lambda t: datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="seconds")  # noqa: E731
    return c | {"binary": str(b), "binary_mtime": iso(b.stat().st_mtime) if b.is_file() else None,
                "newest_source_mtime": iso(newest[0]) if newest[1] else None,
                "newest_source": str(newest[1].relative_to(ROOT)) if newest[1] else None,
                "dirty_files": git("status", "--porcelain", "--untracked-files=no").splitlines()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS),
                    choices=list(SETTINGS), help="quantized files (the float model is always measured)")
    ap.add_argument("--speed-settings", nargs="+", default=list(SPEED_SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--effort", choices=["fast", "default", "best"], help="`lowbit ptq --effort`")
    ap.add_argument("--lowbit-args", default="", help="extra arguments for every `lowbit ptq`, one string")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=10, help="batch-1 warm-up calls")
    ap.add_argument("--runs", type=int, default=50, help="batch-1 timed calls")
    ap.add_argument("--warmup-batch", type=int, default=2, help="batch-32 warm-up calls / rounds")
    ap.add_argument("--runs-batch", type=int, default=10, help="batch-32 timed calls / rounds")
    ap.add_argument("--calib-size", type=int, default=512, help="Fashion-MNIST calibration images")
    ap.add_argument("--test-limit", type=int, default=10000, help="Fashion-MNIST test images judged")
    ap.add_argument("--held-out-crops", type=int, default=10, choices=[1, 10])
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per lowbit command")
    ap.add_argument("--under-load", default=None, help="what else ran on the machine (recorded)")
    ap.add_argument("--keep", type=Path, help="keep the quantized files in DIR/<model>/")
    ap.add_argument("--reuse", action="store_true", help="with --keep: reuse files already there")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    ap.add_argument("--merge", action="store_true", help="keep the other models already in --json")
    ap.add_argument("--table", action="store_true", help="print the table of --json and exit")
    a = ap.parse_args(argv)

    if a.table:
        print_table(json.loads(a.json.read_text()))
        return 0
    import onnxruntime
    import openvino

    if a.reuse and not a.keep:
        ap.error("--reuse needs --keep")
    a.lowbit_args = a.lowbit_args.split()
    env = R.describe_env(a.threads) | {"openvino": openvino.__version__, "loadavg": os.getloadavg()}
    commit = checkout()
    snapshot_dir = Path(tempfile.mkdtemp(prefix="bench-deploy-bin-"))
    a.binary = snapshot_dir / "lowbit"
    shutil.copy2(R.lowbit_bin(), a.binary)
    commit["binary_sha256"] = R._sha256(a.binary)
    commit["binary_snapshot"] = "copied at the start; every lowbit command ran the copy"
    try:
        return run_models(a, env, commit)
    finally:
        shutil.rmtree(snapshot_dir, ignore_errors=True)


def run_models(a, env: dict, commit: dict) -> int:
    import onnxruntime
    import openvino

    run_meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "commit": commit["head"], "dirty": commit["dirty"], "effort": a.effort,
                "binary_mtime": commit["binary_mtime"], "binary_sha256": commit["binary_sha256"],
                "under_load": a.under_load or "not stated"}
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}
    models = {}
    if a.merge and a.json.exists():
        models = {k: v for k, v in json.loads(a.json.read_text()).get("models", {}).items()
                  if k not in a.models}
    for name in a.models:
        t = time.perf_counter()
        models[name] = bench_model(name, a, run_meta)
        models[name]["run"]["seconds"] = time.perf_counter() - t
        result = {"benchmark": "bench_deploy.py (issue 22: deployment)", "commit": commit, "env": env,
                  "onnxruntime": onnxruntime.__version__, "openvino": openvino.__version__,
                  "settings": settings, "under_load": run_meta["under_load"], "models": models}
        a.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = a.json.with_suffix(".json.partial")
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(a.json)
        log(f"wrote {a.json}")
    print_table(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
