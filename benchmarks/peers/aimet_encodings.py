"""aimet-onnx's side of the AIMET encodings interoperability check, for
benchmarks/bench_encodings.py.

Runs in the aimet-onnx virtualenv (`python3 benchmarks/bench_encodings.py --setup` creates it in
.cache/aimet-venv), never in the project's own Python. A JSON job (see `main`) holds two lists:

load tasks (lowbit -> AIMET): the float model lowbit handed over (`--encodings PREFIX` writes
PREFIX.onnx) goes into `aimet_onnx.QuantizationSimModel(model, param_type="int8"|"int4",
activation_type="int8", config_file=...)` (AIMET's default config: "default" is its per-channel
file, default_config.json its per-tensor one); lowbit's encodings go in with
`aimet_onnx.quantsim.load_encodings_to_sim(sim, PREFIX.encodings, strict=True)` (quantizers the
file gives no encoding are disabled: `disable_missing_quantizers=True`, the default); when strict
loading refuses the file, the error is recorded and a fresh sim loads it with strict=False. The
sim's session then runs the test images; the logits go to an .npy file, and the sim's encodings
are exported again as 1.0.0 (`sim.export(..., export_model=False, encoding_version="1.0.0")`) so
that the driver can compare them with lowbit's.

export tasks (AIMET -> lowbit): AIMET quantizes the float model itself: BatchNorm folded
(`aimet_onnx.batch_norm_fold.fold_all_batch_norms_to_weight`, as QuantizationSimModel asks),
`QuantizationSimModel(...)` with the default config of the setting and its default quant scheme
(min_max), `sim.compute_encodings(batches)` on the calibration images, the sim's logits on the
test images to an .npy file, AIMET's own QDQ file of the sim
(`sim.to_onnx_qdq(prequantize_constants=True)`, the reference for what such a file does in ONNX
Runtime) and `sim.export(dir, prefix, encoding_version=V)` for each version asked (PREFIX.onnx +
PREFIX.data + PREFIX.encodings).

Writes the result JSON to job["result"].
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

# The helpers this script shares with the PTQ peer (same folder, so on sys.path when run).
from aimet_ptq import _int4_needs_opset21, _per_tensor_config, _raise_opset, _versions  # noqa: E402


def _config(per_channel: bool) -> str:
    """AIMET's default config: the alias "default" is its per-channel file."""
    return "default" if per_channel else _per_tensor_config()


def _make_sim(model, task: dict, job: dict, workdir: str):
    """task["tie_quantizers"] False (a diagnostic, not AIMET's default): the sim is built with
    aimet_onnx.quantsim._tie_qtzrs off, so that Concat's, AveragePool's and Relu's inputs and
    outputs keep quantizers of their own instead of one shared object."""
    import aimet_onnx
    import aimet_onnx.quantsim as qs

    kw = {"intra_op_num_threads": job["threads"], "inter_op_num_threads": 1} \
        if job.get("threads") else None
    tie = qs._tie_qtzrs  # pylint: disable=protected-access
    qs._tie_qtzrs = task.get("tie_quantizers", True)
    try:
        return aimet_onnx.QuantizationSimModel(
            model, param_type=f"int{task['w_bits']}", activation_type=f"int{task['a_bits']}",
            config_file=_config(task["per_channel"]), session_options_kwargs=kw, path=workdir)
    finally:
        qs._tie_qtzrs = tie


def _run(sim, x: np.ndarray, input_name: str) -> np.ndarray:
    return np.concatenate([sim.session.run(None, {input_name: x[i:i + 500]})[0]
                           for i in range(0, len(x), 500)])


def _quantizer_facts(sim) -> dict:
    """name -> {enabled, kind (param/activation), bias, bitwidth, symmetric, per_channel}."""
    params = set(sim.param_names)
    biases = set()
    for op in sim.connected_graph.get_all_ops().values():
        _, bias = sim._get_weight_and_bias(op)  # pylint: disable=protected-access
        if bias is not None:
            biases.add(bias.name)
    facts = {}
    for name, q in sim.qc_quantize_op_dict.items():
        facts[name] = {"enabled": bool(q.enabled), "kind": "param" if name in params else "activation",
                       "bias": name in biases, "bitwidth": int(q.bitwidth),
                       "symmetric": bool(getattr(q, "use_symmetric_encodings", False)),
                       "per_channel": bool(getattr(q, "quant_info", None) is not None
                                           and getattr(q.quant_info, "usePerChannelMode", False))}
    return facts


def _output_scale(sim, model) -> dict:
    """{"output_scale": the scale of the sim's quantizer on the model's first output}, or {}."""
    q = sim.qc_quantize_op_dict.get(model.graph.output[0].name)
    if q is not None and q.enabled and q.get_encodings():
        return {"output_scale": float(q.get_encodings()[0].delta)}
    return {}


def _entry_names(path: str) -> list[str]:
    enc = json.loads(Path(path).read_text())
    if enc.get("version", "0.6.1") == "0.6.1":
        return list(enc.get("param_encodings", {})) + list(enc.get("activation_encodings", {}))
    if enc["version"].startswith("1."):
        return [e["name"] for e in enc.get("param_encodings", []) + enc.get("activation_encodings", [])]
    return [e["name"] for e in enc.get("encodings", [])]


def _mismatches(infos) -> list[str]:
    out = []
    for m in infos or []:
        parts = [f"{k}={v}" for k, v in vars(m).items() if k != "quantizer_name" and v]
        out.append(f"{m.quantizer_name}: " + ", ".join(parts))
    return out


def load_task(job: dict, task: dict, x: np.ndarray) -> dict:
    """lowbit -> AIMET."""
    import onnx
    from aimet_onnx.quantsim import load_encodings_to_sim

    res: dict = {"id": task["id"]}
    workdir = str(Path(job["workdir"]) / task["id"])
    model_path = task["model"]
    names = set(_entry_names(task["encodings"]))
    res["file_entries"] = len(names)

    t = time.perf_counter()
    sim = _make_sim(onnx.load(model_path), task, job, workdir)
    res["sim_seconds"] = time.perf_counter() - t
    before = _quantizer_facts(sim)
    res["sim_quantizers"] = len(before)
    res["sim_enabled_before_load"] = sum(f["enabled"] for f in before.values())
    # The sim's enabled quantizers that lowbit's file gives no encoding: load_encodings_to_sim
    # (disable_missing_quantizers=True) switches them off.
    res["aimet_enabled_without_entry"] = sorted(
        ({"name": n, **f} for n, f in before.items() if f["enabled"] and n not in names),
        key=lambda d: d["name"])
    res["entries_aimet_had_disabled"] = sorted(n for n in names if n in before and not before[n]["enabled"])
    res["entries_without_sim_quantizer"] = sorted(n for n in names if n not in before)

    call = "load_encodings_to_sim(sim, path, strict=True)"
    try:
        mism = load_encodings_to_sim(sim, task["encodings"], strict=True)
        res["strict"] = {"ok": True, "mismatches": _mismatches(mism)}
    except Exception as e:
        res["strict"] = {"ok": False, "error": f"{type(e).__name__}: {e}"[:3000]}
        call = "load_encodings_to_sim(sim, path, strict=False)"
        sim = _make_sim(onnx.load(model_path), task, job, workdir + "_lenient")
        mism = load_encodings_to_sim(sim, task["encodings"], strict=False)
        res["lenient"] = {"ok": True, "mismatches": _mismatches(mism)}
    res["load_call"] = call
    after = _quantizer_facts(sim)
    res["sim_enabled_after_load"] = sorted(n for n, f in after.items() if f["enabled"])
    res["entries_loaded_but_disabled"] = sorted(n for n in names if n in after and not after[n]["enabled"])
    # Tensors that share one quantizer object in the sim (AIMET ties Concat's, AveragePool's and
    # Relu's inputs and outputs): loading gives the whole group the grid of the last entry read.
    groups: dict = {}
    for n, q in sim.qc_quantize_op_dict.items():
        groups.setdefault(id(q), []).append(n)
    res["tied_groups"] = sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])

    t = time.perf_counter()
    input_name = sim.session.get_inputs()[0].name
    logits = _run(sim, x, input_name)
    res["run_seconds"] = time.perf_counter() - t
    np.save(task["out_logits"], logits)
    res["logits"] = task["out_logits"]
    res.update(_output_scale(sim, onnx.load(model_path, load_external_data=False)))

    # AIMET's view of the loaded grids, for the driver to compare with lowbit's file.
    reexport_dir = Path(workdir) / "reexport"
    reexport_dir.mkdir(parents=True, exist_ok=True)
    try:
        sim.export(str(reexport_dir), "aimet", export_model=False, encoding_version="1.0.0")
        res["reexport"] = str(reexport_dir / "aimet.encodings")
    except Exception as e:
        res["reexport_error"] = f"{type(e).__name__}: {e}"[:1000]
    res["ok"] = True
    return res


def export_task(job: dict, task: dict, calib_batches, x: np.ndarray) -> dict:
    """AIMET -> lowbit."""
    import onnx
    from aimet_onnx.batch_norm_fold import fold_all_batch_norms_to_weight

    res: dict = {"id": task["id"]}
    workdir = str(Path(job["workdir"]) / task["id"])
    model = onnx.load(task["model"])
    outputs = onnx.helper.make_model(onnx.helper.make_graph([], "outputs", [], list(model.graph.output)))
    t = time.perf_counter()
    folded = fold_all_batch_norms_to_weight(model)
    res["bn_folded"] = sum(len(p) for p in folded) if isinstance(folded, tuple) else len(folded)
    sim = _make_sim(model, task, job, workdir)
    sim.compute_encodings(calib_batches)
    res["quantize_seconds"] = time.perf_counter() - t
    facts = _quantizer_facts(sim)
    res["sim_quantizers"] = len(facts)
    res["sim_enabled"] = sorted(n for n, f in facts.items() if f["enabled"])
    input_name = sim.session.get_inputs()[0].name
    logits = _run(sim, x, input_name)
    np.save(task["out_logits"], logits)
    res["logits"] = task["out_logits"]
    res.update(_output_scale(sim, outputs))
    res["exports"] = {}
    outdir = Path(task["outdir"])
    outdir.mkdir(parents=True, exist_ok=True)
    # AIMET's own QDQ file of the same sim, the reference for what a QDQ file of these
    # encodings does in ONNX Runtime (int4 initializers need opset 21).
    try:
        qdq = sim.to_onnx_qdq(prequantize_constants=True)
        if _int4_needs_opset21(qdq):
            _raise_opset(qdq, 21)
        onnx.save(qdq, str(outdir / "aimet_qdq.onnx"))
        res["aimet_qdq"] = str(outdir / "aimet_qdq.onnx")
    except Exception as e:
        res["aimet_qdq_error"] = f"{type(e).__name__}: {e}"[:1000]
    for v in task["versions"]:
        prefix = f"aimet_{v.replace('.', '_')}"
        try:
            with contextlib.redirect_stderr(sys.stderr):
                sim.export(str(outdir), prefix, encoding_version=v)
            res["exports"][v] = {"ok": True, "model": str(outdir / f"{prefix}.onnx"),
                                 "encodings": str(outdir / f"{prefix}.encodings"),
                                 "call": f"sim.export(dir, {prefix!r}, encoding_version={v!r})"}
        except Exception as e:
            res["exports"][v] = {"ok": False, "error": f"{type(e).__name__}: {e}"[:1500]}
    res["ok"] = True
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description="aimet-onnx side of the AIMET encodings check")
    ap.add_argument("job", type=Path)
    a = ap.parse_args(argv)
    job = json.loads(a.job.read_text())
    if job.get("threads"):
        import torch

        torch.set_num_threads(int(job["threads"]))
    x = np.load(job["test"]).astype(np.float32)
    calib = np.load(job["calib"]).astype(np.float32)
    bs = int(job.get("batch_size", 32))
    results = {"versions": _versions(), "load": [], "export": []}
    for kind, tasks, fn in (("load", job.get("load_tasks", []), load_task),
                            ("export", job.get("export_tasks", []), export_task)):
        for task in tasks:
            t = time.perf_counter()
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    if kind == "load":
                        r = fn(job, task, x)
                    else:
                        import onnx

                        name = onnx.load(task["model"], load_external_data=False).graph.input[0].name
                        batches = [{name: calib[i:i + bs]} for i in range(0, len(calib), bs)]
                        r = fn(job, task, batches, x)
            except Exception as e:
                r = {"id": task["id"], "ok": False, "reason": f"{type(e).__name__}: {e}"[:2000],
                     "traceback": traceback.format_exc()[-3000:]}
            r["seconds"] = time.perf_counter() - t
            results[kind].append(r)
            print(f"aimet {kind} {task['id']}: "
                  f"{'%.1f s' % r['seconds'] if r.get('ok') else r.get('reason')}",
                  file=sys.stderr, flush=True)
            Path(job["result"]).write_text(json.dumps(results))
    Path(job["result"]).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
