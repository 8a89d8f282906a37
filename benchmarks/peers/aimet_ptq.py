"""AIMET (aimet-onnx) post-training quantization as a peer of `lowbit ptq`, for
benchmarks/bench_ptq.py.

Runs in the peers virtualenv (`python3 benchmarks/bench_ptq.py --setup-peers` creates it in
.cache/peers-venv), never in the project's own Python. Per setting (weight bits, activation bits,
per-tensor / per-channel) and model it does, each step timed on its own:

1. load the float ONNX file;
2. `aimet_onnx.cross_layer_equalization.equalize_model(model)`: BatchNorm folding, cross-layer
   scaling and high-bias absorption, in place;
3. `aimet_onnx.QuantizationSimModel(model, param_type=intW, activation_type=intA,
   quant_scheme=..., config_file=...)`: AIMET's default config, in its per-channel flavour
   ("default") or its per-tensor one (default_config.json): symmetric weights, asymmetric
   activations, biases not quantized;
4. `aimet_onnx.apply_adaround(sim, batches, num_iterations=N)` on the calibration batches;
5. `sim.compute_encodings(batches)`: activation ranges, with the AdaRounded weights frozen;
6. `sim.to_onnx_qdq(prequantize_constants=True)` saved as a QDQ ONNX file (opset raised to 21
   when int4 initializers need it); if that fails, the QuantSim session itself is evaluated on
   the test inputs given and the result says so.

Input: a JSON job on the command line (see `main`); output: a JSON result on stdout's last line.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np


def _versions() -> dict:
    out = {}
    for mod in ("aimet_onnx", "onnx", "onnxruntime", "torch", "numpy"):
        try:
            m = __import__(mod)
            out[mod] = getattr(m, "__version__", "?")
        except Exception as e:  # pragma: no cover - reported, not fatal
            out[mod] = f"unavailable ({type(e).__name__})"
    return out


def _per_tensor_config() -> str:
    """AIMET's default config file without per-channel weights (the alias "default" is the
    per-channel one)."""
    from aimet_onnx.common.quantsim_config import quantsim_config as qc

    return str(Path(qc.__file__).resolve().parent / "default_config.json")


def _int4_needs_opset21(model) -> bool:
    import onnx

    return any(t.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4)
               for t in model.graph.initializer)


def _raise_opset(model, target: int):
    """Set the default-domain opset to `target` (QuantizeLinear/DequantizeLinear take int4 from
    opset 21; the other operators of these models are unchanged between 17 and 21)."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version < target:
            imp.version = target
    return model


def run_one(job: dict, setting: dict, calib_batches, test_x) -> dict:
    import onnx
    import aimet_onnx
    from aimet_onnx.cross_layer_equalization import equalize_model
    from aimet_onnx.batch_norm_fold import fold_all_batch_norms_to_weight

    w_bits, a_bits, per_channel = setting["w_bits"], setting["a_bits"], setting["per_channel"]
    steps = []
    sess_kw = {"intra_op_num_threads": job["threads"], "inter_op_num_threads": 1} \
        if job.get("threads") else None

    def timed(name, fn):
        t = time.perf_counter()
        r = fn()
        steps.append({"step": name, "seconds": time.perf_counter() - t})
        return r

    t_all = time.perf_counter()
    model = timed("load", lambda: onnx.load(job["model"]))
    if job.get("cle", True):
        timed("cle (equalize_model: BN fold + CLS + high-bias fold)", lambda: equalize_model(model))
    else:
        timed("bn fold", lambda: fold_all_batch_norms_to_weight(model))
    config = "default" if per_channel else _per_tensor_config()
    sim = timed("quantsim", lambda: aimet_onnx.QuantizationSimModel(
        model, param_type=f"int{w_bits}", activation_type=f"int{a_bits}",
        quant_scheme=job["quant_scheme"], config_file=config,
        session_options_kwargs=sess_kw, path=job["workdir"]))
    iters = job.get("adaround_iterations")
    if job.get("adaround", True):
        if iters is None:
            timed("adaround", lambda: aimet_onnx.apply_adaround(sim, calib_batches))
        else:
            timed("adaround", lambda: aimet_onnx.apply_adaround(sim, calib_batches,
                                                                num_iterations=iters))
    timed("compute_encodings", lambda: sim.compute_encodings(calib_batches))
    quant_seconds = time.perf_counter() - t_all

    out = {"ok": True, "steps": steps, "seconds": quant_seconds, "config_file": config}
    try:
        t = time.perf_counter()
        qdq = sim.to_onnx_qdq(prequantize_constants=True)
        if _int4_needs_opset21(qdq):
            _raise_opset(qdq, 21)
        onnx.save(qdq, setting["out"])
        out["export_seconds"] = time.perf_counter() - t
        out["exported"] = setting["out"]
        out["export"] = "to_onnx_qdq(prequantize_constants=True)"
    except Exception as e:
        out["exported"] = None
        out["export_error"] = f"{type(e).__name__}: {e}"[:600]
    if test_x is not None:
        # Evaluated with AIMET's own QuantSim session as well (a cross-check; the benchmark
        # prefers the exported file run in ONNX Runtime).
        name = sim.session.get_inputs()[0].name
        logits = np.concatenate([sim.session.run(None, {name: test_x[i:i + 500]})[0]
                                 for i in range(0, len(test_x), 500)])
        out["sim_predictions"] = logits.argmax(axis=1).astype(int).tolist()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="AIMET CLE + AdaRound + QuantSim, export to QDQ")
    ap.add_argument("job", type=Path, help="JSON: model, calib (.npy), settings, ...")
    a = ap.parse_args(argv)
    job = json.loads(a.job.read_text())
    if job.get("threads"):
        import torch

        torch.set_num_threads(int(job["threads"]))
    calib = np.load(job["calib"]).astype(np.float32)
    bs = int(job.get("batch_size", 32))
    import onnx

    input_name = onnx.load(job["model"], load_external_data=False).graph.input[0].name
    calib_batches = [{input_name: calib[i:i + bs]} for i in range(0, len(calib), bs)]
    test_x = np.load(job["test"]).astype(np.float32) if job.get("test") else None
    results = {"versions": _versions(), "settings": []}
    for setting in job["settings"]:
        try:
            with contextlib.redirect_stdout(sys.stderr):
                r = run_one(job, setting, calib_batches,
                            test_x if setting.get("sim_eval") else None)
        except Exception as e:
            r = {"ok": False, "reason": f"{type(e).__name__}: {e}"[:800],
                 "traceback": traceback.format_exc()[-3000:]}
        r["setting"] = setting["name"]
        results["settings"].append(r)
        print(f"aimet: {Path(job['model']).stem} {setting['name']}: "
              f"{'%.1f s' % r['seconds'] if r.get('ok') else r.get('reason')}",
              file=sys.stderr, flush=True)
    Path(job["result"]).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
