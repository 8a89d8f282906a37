#!/usr/bin/env python3
"""AIMET encodings interoperability: lowbit's encodings files in the real aimet-onnx, and
aimet-onnx's in lowbit.

    python3 benchmarks/bench_encodings.py [--models fm_resnet20 ...] [--settings pt_w8a8 ...]
                                          [--versions 1.0.0 2.0.0 0.6.1] [--test-limit 2000]
                                          [--calib-size 256] [--check]
    python3 benchmarks/bench_encodings.py --setup    # creates .cache/aimet-venv with aimet-onnx

For each Fashion-MNIST model and setting (W8A8 per tensor, W8A8 and W4A8 per channel):

lowbit -> AIMET, per encodings version: `lowbit ptq MODEL --calib fashion-mnist:train:N
--effort fast --target qnn --encodings PREFIX --encodings-version V` (`--target` to change) writes q.onnx, PREFIX.encodings and
PREFIX.onnx; aimet-onnx (benchmarks/peers/aimet_encodings.py, in its own virtualenv) builds a
QuantizationSimModel of PREFIX.onnx with AIMET's default config for the setting, loads
PREFIX.encodings with `load_encodings_to_sim(sim, PREFIX.encodings, strict=True)` (strict=False
after a refusal, which is reported) and runs the test images in the sim's session; the rows
compare its logits with `lowbit run q.onnx` (lowbit's own simulation): top-1 agreement and the
largest logit difference in steps of the output quantizer.

AIMET -> lowbit: aimet-onnx folds BatchNorm, quantizes the float model with its default config
and quant scheme, calibrates on the first N training images (`sim.compute_encodings`) and exports
(`sim.export(..., encoding_version=V)`: PREFIX.onnx and PREFIX.encodings); `lowbit ptq
PREFIX.onnx --load-encodings PREFIX.encodings` writes the QDQ file, which ONNX Runtime runs; the
rows compare it with the sim's own logits. A file lowbit refuses is a row with lowbit's error.

Writes benchmarks/results/encodings.json. --check: exit 1 when a row agrees on fewer than 99.5%
of the images or a step failed.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[0] / "tests" / "golden"))

import ort_reference as R  # noqa: E402

REPO = HERE.parent
VENV = REPO / ".cache" / "aimet-venv"
WORKER = HERE / "peers" / "aimet_encodings.py"
AIMET_PACKAGE = "aimet-onnx==2.42.0"

MODELS = ("fm_resnet20", "fm_mobilenetv2", "fm_inception")
# name -> (weight bits, activation bits, per-channel)
SETTINGS = {"pt_w8a8": (8, 8, False), "pc_w8a8": (8, 8, True), "pc_w4a8": (4, 8, True)}
COLUMN = {"pt_w8a8": "PT W8A8", "pc_w8a8": "PC W8A8", "pc_w4a8": "PC W4A8"}
VERSIONS = ("1.0.0", "2.0.0", "0.6.1")
TARGET_AGREEMENT = 99.5  # percent of test images with the same arg-max


def log(msg: str):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The aimet-onnx virtualenv
# --------------------------------------------------------------------------------------------


def venv_python() -> Path:
    return VENV / "bin" / "python"


def _local_cpu_torch() -> Path | None:
    """A CPU build of torch among pip's --find-links folders (PIP_FIND_LINKS), if any."""
    for folder in os.environ.get("PIP_FIND_LINKS", "").split():
        for wheel in sorted(Path(folder).glob("torch-*+cpu-*.whl")) if Path(folder).is_dir() else []:
            return wheel
    return None


def setup() -> int:
    """Create .cache/aimet-venv with aimet-onnx (the project's Python is left alone). Where pip's
    --find-links folder has a CPU build of torch, that one goes in first and pins torch: PyPI's
    torch is the CUDA build, several GB of NVIDIA libraries this CPU-only check never loads.
    (torchvision, which aimet-onnx's onnx2torch pulls in for AdaScale and LoRA only, is then
    PyPI's CUDA build of the matching version and does not import; nothing here uses it.)"""
    t = time.perf_counter()
    if not venv_python().is_file():
        log(f"creating {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(venv_python()), "-m", "pip", "install"]
    pins: list[str] = []
    wheel = _local_cpu_torch()
    if wheel is not None:
        subprocess.run(pip + [str(wheel)], check=True)
        version = wheel.name.split("-")[1]
        constraints = VENV / "constraints.txt"
        constraints.write_text(f"torch=={version}\n")
        pins = ["-c", str(constraints)]
    subprocess.run(pip + [AIMET_PACKAGE, *pins], check=True)
    ok, versions = aimet_versions()
    log(f"{VENV}: {versions} ({time.perf_counter() - t:.0f} s)")
    return 0 if ok else 1


def aimet_versions() -> tuple[bool, dict | str]:
    if not venv_python().is_file():
        return False, f"no virtualenv at {VENV} (run: python3 benchmarks/bench_encodings.py --setup)"
    out = subprocess.run([str(venv_python()), "-c",
                          "import json, aimet_onnx, torch, onnx, onnxruntime, numpy; print(json.dumps("
                          "{m.__name__: m.__version__ for m in (aimet_onnx, torch, onnx, onnxruntime, numpy)}))"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return False, f"aimet_onnx does not import in {VENV}: {out.stderr.strip()[-600:]}"
    return True, json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def setting_flags(setting: str) -> list[str]:
    w, a, pc = SETTINGS[setting]
    return ["--w-bits", str(w), "--a-bits", str(a)] + (["--per-channel"] if pc else [])


def lowbit(binary: Path, args: list, threads: int) -> tuple[subprocess.CompletedProcess, str]:
    proc = R.run_lowbit([str(a) for a in args], env={"LOWBIT_THREADS": str(threads)},
                        binary=binary, timeout=3600)
    return proc, " ".join(shlex.quote(str(s)) for s in [binary.name, *args])


def file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def steps_text(c: dict) -> str:
    return f"{c['max_diff_steps']:.2f}" if c.get("max_diff_steps") is not None else "-"


def compare(actual: np.ndarray, reference: np.ndarray, scale: float | None) -> dict:
    agree = float((actual.argmax(1) == reference.argmax(1)).mean() * 100.0)
    diff = float(np.abs(actual.astype(np.float64) - reference.astype(np.float64)).max())
    return {"agreement": agree, "disagreeing_images": int((actual.argmax(1) != reference.argmax(1)).sum()),
            "max_abs_diff": diff, "output_scale": scale,
            "max_diff_steps": diff / scale if scale else None}


def output_scale_of_qdq(path: Path, output: str) -> float | None:
    q = R.qdq_output_quantizer(path, output)
    return float(np.max(q["scale"])) if q is not None else None


def grid_differences(lowbit_file: Path, aimet_file: Path) -> dict:
    """lowbit's 1.0.0 entries against AIMET's re-export (1.0.0) after loading them: how many
    entries AIMET has of lowbit's, and the largest relative scale / absolute offset difference
    and any bitwidth / symmetry / encoding-type difference."""
    lb = json.loads(lowbit_file.read_text())
    am = json.loads(aimet_file.read_text())
    lbe = {e["name"]: e for e in lb["param_encodings"] + lb["activation_encodings"]}
    ame = {e["name"]: e for e in am["param_encodings"] + am["activation_encodings"]}
    rel, off, other, absent = 0.0, 0, [], []
    for name, e in lbe.items():
        a = ame.get(name)
        if a is None:
            absent.append(name)
            continue
        s1, s2 = np.asarray(e["scale"], np.float64), np.asarray(a["scale"], np.float64)
        if s1.shape != s2.shape:
            other.append(f"{name}: {len(s1)} scales vs {len(s2)}")
            continue
        rel = max(rel, float(np.max(np.abs(s1 - s2) / s1)))
        off = max(off, int(np.max(np.abs(np.asarray(e["offset"]) - np.asarray(a["offset"])))))
        for k in ("bw", "is_sym", "enc_type", "dtype"):
            if e.get(k) != a.get(k):
                other.append(f"{name}: {k} {e.get(k)} vs {a.get(k)}")
    return {"lowbit_entries": len(lbe), "aimet_entries": len(ame),
            "lowbit_entries_absent_in_aimet": absent,
            "aimet_entries_not_in_lowbit": sorted(set(ame) - set(lbe)),
            "max_rel_scale_diff": rel, "max_offset_diff": off, "field_differences": other[:20]}


def run_worker(work: Path, name: str, threads: int, load_tasks: list, export_tasks: list):
    """Runs benchmarks/peers/aimet_encodings.py in the aimet-onnx virtualenv on one job;
    returns (its result, its exit code)."""
    job = {"threads": threads, "test": str(work / "test.npy"), "calib": str(work / "calib.npy"),
           "batch_size": 32, "workdir": str(work / f"{name}_tmp"),
           "result": str(work / f"{name}.json"),
           "load_tasks": load_tasks, "export_tasks": export_tasks}
    (work / f"{name}_job.json").write_text(json.dumps(job, indent=1))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    proc = subprocess.run([str(venv_python()), str(WORKER), str(work / f"{name}_job.json")],
                          capture_output=True, text=True, env=env, timeout=6 * 3600)
    (work / f"{name}_worker.log").write_text(proc.stderr)
    if not (work / f"{name}.json").is_file():
        sys.exit(f"error: aimet worker exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    if proc.returncode != 0:
        log(f"warning: aimet worker exited {proc.returncode} (results kept so far are used)")
    return json.loads((work / f"{name}.json").read_text()), proc.returncode


def loaded_names(folder: Path) -> set[str]:
    """The entry names of lowbit's file in `folder` (hand.encodings, any version)."""
    enc = json.loads((folder / "hand.encodings").read_text())
    if enc.get("version") == "2.0.0":
        return {e["name"] for e in enc["encodings"]}
    groups = [enc.get("param_encodings", []), enc.get("activation_encodings", [])]
    return {n for g in groups for n in (g if isinstance(g, dict) else [e["name"] for e in g])}


def drop_entries(path: Path, names: set[str], dest: Path):
    """A copy of an encodings file (any version) without the entries named."""
    enc = json.loads(path.read_text())
    for key in ("param_encodings", "activation_encodings", "encodings"):
        group = enc.get(key)
        if isinstance(group, dict):
            enc[key] = {k: v for k, v in group.items() if k not in names}
        elif isinstance(group, list):
            enc[key] = [e for e in group if e.get("name") not in names]
    dest.write_text(json.dumps(enc, indent=1))


def diagnose_refusal(binary: Path, ex: dict, out: Path, setting: str, x: np.ndarray,
                     sim_logits: np.ndarray, scale: float | None, threads: int) -> dict:
    """Not a result: after lowbit refused AIMET's file, what it does with the file less the
    entries it named in its errors (one at a time, at most 200), so that the report says whether
    those entries are the only obstacle. The row stays failed."""
    import re

    dropped: list[str] = []
    src = Path(ex["encodings"])
    trial = out.with_name(out.stem + "_diagnostic.encodings")
    dout = out.with_name(out.stem + "_diagnostic.onnx")
    for _ in range(200):
        drop_entries(src, set(dropped), trial)
        proc, cmd = lowbit(binary, ["ptq", ex["model"], "--load-encodings", trial, "-o", dout,
                                    "--quiet", *setting_flags(setting)], threads)
        if proc.returncode == 0 and dout.is_file():
            logits = next(iter(R.run_ort(R.ort_session(dout, threads=threads), {"input": x},
                                         batch_size=500).values()))
            return {"dropped_entries": dropped, "lowbit_command": cmd, "logits": logits,
                    **compare(logits, sim_logits, output_scale_of_qdq(dout, "logits") or scale)}
        m = re.search(r"encoding for '([^']+)'", proc.stderr)
        if not m or m.group(1) in dropped:
            return {"dropped_entries": dropped, "still_refused": proc.stderr.strip()[-800:]}
        dropped.append(m.group(1))
    return {"dropped_entries": dropped, "still_refused": "more than 200 entries refused"}


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setup", action="store_true", help="create the aimet-onnx virtualenv and exit")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--versions", nargs="+", default=list(VERSIONS), choices=VERSIONS)
    ap.add_argument("--directions", nargs="+", default=["lowbit-aimet", "aimet-lowbit"],
                    choices=["lowbit-aimet", "aimet-lowbit"])
    ap.add_argument("--target", default="qnn", choices=["ort", "openvino", "tensorrt", "qnn"],
                    help="`lowbit ptq --target` for the lowbit -> AIMET files (default qnn: the hand-over is "
                         "to Qualcomm's toolchain, whose runtime ties Concat and AveragePool grids as AIMET does)")
    ap.add_argument("--calib-size", type=int, default=256)
    ap.add_argument("--test-limit", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--lowbit", type=Path, default=None,
                    help="binary (default: env LOWBIT_BIN or .build/release/lowbit)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="keep the files here (default: a temporary folder, removed)")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "encodings.json")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args(argv)
    if a.setup:
        return setup()

    binary = (a.lowbit or R.lowbit_bin()).resolve()
    if not binary.is_file():
        sys.exit(f"error: no lowbit binary at {binary}")
    ok, versions = aimet_versions()
    if not ok:
        sys.exit(f"error: {versions}")
    import onnx
    import onnxruntime

    checkout_start, binary_start = R.git_checkout(binary), file_digest(binary)
    models_dir = R.models_dir()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="bench_encodings_"))
    work.mkdir(parents=True, exist_ok=True)
    x, _ = R.load_fashion_mnist("test", limit=a.test_limit)
    calib, _ = R.load_fashion_mnist("train", limit=a.calib_size)
    np.save(work / "test.npy", x)
    np.save(work / "calib.npy", calib)
    rows: list[dict] = []
    load_tasks, export_tasks, lowbit_side = [], [], {}

    # ---- lowbit -> AIMET: lowbit's files ----
    if "lowbit-aimet" in a.directions:
        for m in a.models:
            for s in a.settings:
                for v in a.versions:
                    tid = f"lb_{m}_{s}_{v.replace('.', '_')}"
                    d = work / tid
                    d.mkdir(exist_ok=True)
                    q, prefix, logits = d / "q.onnx", d / "hand", d / "lowbit_logits.npy"
                    t = time.perf_counter()
                    proc, cmd = lowbit(binary, ["ptq", models_dir / f"{m}.onnx", "--calib",
                                                f"fashion-mnist:train:{a.calib_size}", "-o", q,
                                                "--effort", "fast", "--encodings", prefix,
                                                "--encodings-version", v, "--quiet",
                                                "--target", a.target, *setting_flags(s)], a.threads)
                    row = {"direction": "lowbit->aimet", "model": m, "setting": s, "version": v,
                           "lowbit_command": cmd, "lowbit_seconds": time.perf_counter() - t}
                    if proc.returncode != 0:
                        row.update(ok=False, error="lowbit ptq: " + R.describe_proc(proc, 1200))
                        rows.append(row)
                        continue
                    proc, cmd = lowbit(binary, ["run", q, "--data", f"npy:{work / 'test.npy'}",
                                                "--save-outputs", logits, "--quiet"], a.threads)
                    if proc.returncode != 0:
                        row.update(ok=False, error="lowbit run: " + R.describe_proc(proc, 1200))
                        rows.append(row)
                        continue
                    row["lowbit_run_command"] = cmd
                    lowbit_side[tid] = row
                    load_tasks.append({"id": tid, "model": str(prefix) + ".onnx",
                                       "encodings": str(prefix) + ".encodings",
                                       "w_bits": SETTINGS[s][0], "a_bits": SETTINGS[s][1],
                                       "per_channel": SETTINGS[s][2],
                                       "out_logits": str(d / "aimet_logits.npy")})
                    log(f"lowbit {m} {s} {v}: written")

    # ---- AIMET -> lowbit: AIMET quantizes ----
    if "aimet-lowbit" in a.directions:
        for m in a.models:
            for s in a.settings:
                tid = f"aimet_{m}_{s}"
                export_tasks.append({"id": tid, "model": str(models_dir / f"{m}.onnx"),
                                     "model_name": m, "setting": s,
                                     "w_bits": SETTINGS[s][0], "a_bits": SETTINGS[s][1],
                                     "per_channel": SETTINGS[s][2], "versions": a.versions,
                                     "outdir": str(work / tid),
                                     "out_logits": str(work / f"{tid}_sim_logits.npy")})

    export_of = {t["id"]: (t["model_name"], t["setting"]) for t in export_tasks}
    t = time.perf_counter()
    aimet, worker_exit = run_worker(work, "aimet", a.threads, load_tasks, export_tasks)
    aimet_wall = time.perf_counter() - t

    # Diagnostic (not a result): rows below the target or whose grids AIMET did not keep, again
    # with AIMET's quantizer tying off, to say whether the tying is the whole difference.
    untie = []
    for r in aimet["load"]:
        if not r.get("ok"):
            continue
        lb_logits = np.load(work / r["id"] / "lowbit_logits.npy")
        agree = (np.load(r["logits"]).argmax(1) == lb_logits.argmax(1)).mean() * 100.0
        if agree < TARGET_AGREEMENT:
            task = dict(next(t for t in load_tasks if t["id"] == r["id"]))
            task.update(id=r["id"] + "_untied", tie_quantizers=False,
                        out_logits=str(work / r["id"] / "aimet_untied_logits.npy"))
            untie.append(task)
    untied = {}
    if untie:
        diag, _ = run_worker(work, "aimet_untied", a.threads, untie, [])
        untied = {r["id"][: -len("_untied")]: r for r in diag["load"]}

    # ---- lowbit -> AIMET rows ----
    for r in aimet["load"]:
        row = lowbit_side[r["id"]]
        d = work / r["id"]
        if not r.get("ok"):
            row.update(ok=False, error="aimet: " + r.get("reason", "?"),
                       traceback=r.get("traceback"))
            rows.append(row)
            continue
        lb_logits = np.load(d / "lowbit_logits.npy")
        aim_logits = np.load(r["logits"])
        scale = output_scale_of_qdq(d / "q.onnx", "logits") or r.get("output_scale")
        row.update(compare(aim_logits, lb_logits, scale))
        row["aimet_load_call"] = r["load_call"]
        row["strict_load"] = r["strict"]
        if "lenient" in r:
            row["lenient_load"] = r["lenient"]
        for k in ("file_entries", "sim_quantizers", "sim_enabled_before_load",
                  "aimet_enabled_without_entry", "entries_aimet_had_disabled",
                  "entries_without_sim_quantizer", "entries_loaded_but_disabled", "reexport_error"):
            if k in r:
                row[k] = r[k]
        row["sim_enabled_after_load"] = len(r["sim_enabled_after_load"])
        lb_v1 = work / f"lb_{row['model']}_{row['setting']}_1_0_0" / "hand.encodings"
        if r.get("reexport") and lb_v1.is_file():
            row["grids_vs_lowbit_1_0_0"] = grid_differences(lb_v1, Path(r["reexport"]))
        row["aimet_tied_groups_with_entries"] = [
            g for g in r.get("tied_groups", []) if sum(n in loaded_names(d) for n in g) > 1]
        u = untied.get(r["id"])
        if u is not None:
            if u.get("ok"):
                row["diagnostic_untied"] = {
                    "call": "aimet_onnx.quantsim._tie_qtzrs = False before QuantizationSimModel, then "
                            + u["load_call"],
                    "strict_ok": u["strict"]["ok"],
                    **compare(np.load(u["logits"]), lb_logits, scale)}
                if u.get("reexport") and lb_v1.is_file():
                    row["diagnostic_untied"]["grids_vs_lowbit_1_0_0"] = grid_differences(
                        lb_v1, Path(u["reexport"]))
            else:
                row["diagnostic_untied"] = {"error": u.get("reason")}
        row["ok"] = row["agreement"] >= TARGET_AGREEMENT
        rows.append(row)

    # ---- AIMET -> lowbit rows ----
    ort_threads = a.threads
    aimet_qdq_rows: list[dict] = []
    for r in aimet["export"]:
        m, s = export_of[r["id"]]
        base = {"direction": "aimet->lowbit", "model": m, "setting": s}
        if not r.get("ok"):
            for v in a.versions:
                rows.append({**base, "version": v, "ok": False, "error": "aimet: " + r.get("reason", "?"),
                             "traceback": r.get("traceback")})
            continue
        sim_logits = np.load(r["logits"])
        qdq_logits, qdq_cmp = None, None
        if r.get("aimet_qdq"):
            try:
                qdq_logits = next(iter(R.run_ort(R.ort_session(r["aimet_qdq"], threads=ort_threads),
                                                 {"input": x}, batch_size=500).values()))
                qdq_cmp = compare(qdq_logits, sim_logits, r.get("output_scale")
                                  or output_scale_of_qdq(Path(r["aimet_qdq"]), "logits"))
            except Exception as e:
                qdq_cmp = {"error": f"onnxruntime: {type(e).__name__}: {e}"[:800]}
        else:
            qdq_cmp = {"error": r.get("aimet_qdq_error", "no file")}
        aimet_qdq_rows.append({"model": m, "setting": s, **qdq_cmp})
        for v in a.versions:
            ex = r["exports"].get(v, {})
            row = {**base, "version": v, "aimet_quantize_seconds": r["quantize_seconds"],
                   "aimet_bn_folded": r.get("bn_folded"), "aimet_sim_enabled": len(r["sim_enabled"])}
            if not ex.get("ok"):
                row.update(ok=False, error="aimet export: " + ex.get("error", "not exported"))
                rows.append(row)
                continue
            row["aimet_export_call"] = ex["call"]
            out = Path(ex["model"]).with_name(f"lowbit_{v.replace('.', '_')}.onnx")
            t = time.perf_counter()
            proc, cmd = lowbit(binary, ["ptq", ex["model"], "--load-encodings", ex["encodings"],
                                        "-o", out, "--json", out.with_suffix(".json"), "--quiet",
                                        *setting_flags(s)], a.threads)
            row.update(lowbit_command=cmd, lowbit_seconds=time.perf_counter() - t)
            if proc.returncode != 0 or not out.is_file():
                row.update(ok=False, error="lowbit ptq --load-encodings: " +
                           (proc.stderr.strip() or proc.stdout.strip())[-1500:],
                           exit_code=proc.returncode)
                row["diagnostic_without_refused_entries"] = dg = diagnose_refusal(
                    binary, ex, out, s, x, sim_logits, r.get("output_scale"), a.threads)
                if qdq_logits is not None and dg.get("logits") is not None:
                    dg["vs_aimet_own_qdq"] = compare(dg["logits"], qdq_logits, dg["output_scale"])
                dg.pop("logits", None)
                rows.append(row)
                continue
            try:
                rep = json.loads(out.with_suffix(".json").read_text())
                row["lowbit_steps"] = [st.get("detail") for st in rep.get("steps", [])
                                       if st.get("detail")]
            except (OSError, ValueError):
                pass
            try:
                lb_logits = R.run_ort(R.ort_session(out, threads=ort_threads), {"input": x},
                                      batch_size=500)
                lb_logits = next(iter(lb_logits.values()))
            except Exception as e:  # the written file does not load in ORT
                row.update(ok=False, error=f"onnxruntime: {type(e).__name__}: {e}"[:1500])
                rows.append(row)
                continue
            scale = output_scale_of_qdq(out, "logits") or r.get("output_scale")
            row.update(compare(lb_logits, sim_logits, scale))
            row["aimet_own_qdq_vs_sim"] = qdq_cmp
            if qdq_logits is not None:
                row["lowbit_vs_aimet_own_qdq"] = compare(lb_logits, qdq_logits, scale)
            row["ok"] = row["agreement"] >= TARGET_AGREEMENT
            rows.append(row)

    # ---- table ----
    order = {m: i for i, m in enumerate(MODELS)}
    rows.sort(key=lambda r: (r["direction"] != "lowbit->aimet", order[r["model"]],
                             list(SETTINGS).index(r["setting"]), VERSIONS.index(r["version"])))
    hdr = (f"{'direction':<14} {'model':<15} {'setting':<8} {'version':<7} {'agree %':>8} "
           f"{'differ':>6} {'max Δ steps':>11} {'load':<14} {'no entry (AIMET on)':>19}  status")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        if "agreement" in r:
            steps = f"{r['max_diff_steps']:.2f}" if r.get("max_diff_steps") is not None else "-"
            load = ("strict" if r.get("strict_load", {}).get("ok") else "strict=False"
                    if "strict_load" in r else "lowbit ptq")
            missing = len(r.get("aimet_enabled_without_entry", [])) if "strict_load" in r else "-"
            status = "ok" if r["ok"] else f"BELOW {TARGET_AGREEMENT}"
            print(f"{r['direction']:<14} {r['model']:<15} {COLUMN[r['setting']]:<8} {r['version']:<7} "
                  f"{r['agreement']:>8.2f} {r['disagreeing_images']:>6} {steps:>11} {load:<14} "
                  f"{str(missing):>19}  {status}")
        else:
            print(f"{r['direction']:<14} {r['model']:<15} {COLUMN[r['setting']]:<8} {r['version']:<7} "
                  f"{'-':>8} {'-':>6} {'-':>11} {'-':<14} {'-':>19}  FAILED: "
                  f"{r.get('error', '?').splitlines()[-1][:160]}")
    failures = [r for r in rows if not r.get("ok")]
    notes = []
    for r in rows:
        tag = f"{r['direction']} {r['model']} {COLUMN[r['setting']]} {r['version']}"
        u = r.get("diagnostic_untied")
        if u and "agreement" in u:
            notes.append(f"{tag}: with AIMET's quantizer tying off (diagnostic): {u['agreement']:.2f}% "
                         f"agree, max Δ {steps_text(u)} steps")
        dg = r.get("diagnostic_without_refused_entries")
        if dg and "agreement" in dg:
            notes.append(f"{tag}: without the {len(dg['dropped_entries'])} entries lowbit refused "
                         f"(diagnostic): {dg['agreement']:.2f}% agree, max Δ {steps_text(dg)} steps")
        elif dg:
            notes.append(f"{tag}: still refused after dropping {len(dg['dropped_entries'])} entries: "
                         f"{dg.get('still_refused', '')[-200:]}")
    if aimet_qdq_rows:
        print("\nreference: AIMET's own QDQ file (sim.to_onnx_qdq) in ONNX Runtime vs AIMET's sim")
        for q in aimet_qdq_rows:
            if "agreement" in q:
                steps = steps_text(q)
                print(f"  {q['model']:<15} {COLUMN[q['setting']]:<8} {q['agreement']:6.2f}% agree, "
                      f"max Δ {steps} steps")
            else:
                print(f"  {q['model']:<15} {COLUMN[q['setting']]:<8} {q['error'][:200]}")
    for r in rows:
        c = r.get("lowbit_vs_aimet_own_qdq") or (r.get("diagnostic_without_refused_entries") or {}).get("vs_aimet_own_qdq")
        if c:
            notes.append(f"{r['direction']} {r['model']} {COLUMN[r['setting']]} {r['version']}: lowbit's QDQ "
                         f"{'(diagnostic file) ' if 'lowbit_vs_aimet_own_qdq' not in r else ''}vs AIMET's own "
                         f"QDQ, both in ONNX Runtime: {c['agreement']:.2f}% agree, max Δ {steps_text(c)} steps")
    if notes:
        print("\ndiagnostics (not results; the rows above stand):")
        for n in notes:
            print(f"  {n}")

    checkout, binary_end = R.git_checkout(binary), file_digest(binary)
    if checkout != checkout_start or binary_end != binary_start:
        log("warning: the checkout or the lowbit binary changed during the run "
            f"({checkout_start} -> {checkout}; binary {binary_start[:12]} -> {binary_end[:12]})")
    result = {
        "benchmark": "encodings",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": checkout_start["head"], "checkout": checkout_start, "checkout_at_end": checkout,
        "lowbit": str(binary),
        "lowbit_sha256": binary_start, "lowbit_changed_during_run": binary_end != binary_start,
        "environment": {**R.describe_env(a.threads), "onnx": onnx.__version__,
                        "onnxruntime": onnxruntime.__version__},
        "aimet_venv": {"path": str(VENV), "versions": versions, "worker_seconds": aimet_wall,
                       "worker_exit": worker_exit},
        "data": {"calibration": f"fashion-mnist train[:{a.calib_size}]",
                 "test": f"fashion-mnist test[:{len(x)}]",
                 "normalization": "(x/255 - 0.2860)/0.3530"},
        "settings": {s: dict(zip(("w_bits", "a_bits", "per_channel"), SETTINGS[s])) for s in a.settings},
        "lowbit_target": a.target,
        "target_agreement_percent": TARGET_AGREEMENT,
        "rows": rows,
        "aimet_own_qdq_vs_sim": aimet_qdq_rows,
        "diagnostics": notes,
        "failed": [f"{r['direction']} {r['model']} {r['setting']} {r['version']}" for r in failures],
    }
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.json}")
    if a.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"files kept in {work}")
    return 1 if a.check and failures else 0


if __name__ == "__main__":
    sys.exit(main())
