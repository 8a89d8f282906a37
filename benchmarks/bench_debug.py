"""`lowbit debug` against the `lowbit ptq` run it explains (issue 23).

Per case (model and options), the two commands run one after the other `--runs` times on the
same data, so both see the same load; the ratio is of the median wall times (goal: debug within
3x of ptq on fm_resnet20). Each debug run's JSON gives what the flow found: the causes the
diagnosis names, the fixes kept, the front of mixed precision (loss and output cosine against
FP32 per number of widened activation quantizers) and the recommended command; the recommended
command is then run as printed and its file judged in ONNX Runtime on the same held-out samples
(KL for logits, cosine for embeddings), next to the loss the flow reported.

Cases:
- fm_resnet20: lowbit's defaults (W8A8 per tensor);
- fm_mobilenetv2_pt_w4a8: per-tensor W4A8 without CLE (the white paper's table-3 pathology; one run);
- minilm_w8a8: all-MiniLM-L6-v2 at W8A8, --effort fast (the residual stream; slow, one run).

Writes benchmarks/results/debug.json (commit, settings, load average, every run's times).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
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
import ort_reference as R  # noqa: E402


def minilm_spec(split: str) -> str:
    d = R.minilm_data_dir()
    return f"npy:input_ids={d / f'{split}_input_ids.npy'},attention_mask={d / f'{split}_attention_mask.npy'}"


def cases(samples: int) -> dict:
    fm = ["--calib", "fashion-mnist:train:512", "--eval", "fashion-mnist:test:512"]
    return {
        "fm_resnet20": {"model": "fm_resnet20", "args": fm, "runs": None},
        "fm_mobilenetv2_pt_w4a8": {"model": "fm_mobilenetv2", "args": fm + ["--w-bits", "4", "--no-cle"], "runs": 1},
        "minilm_w8a8": {"model": "minilm_l6_embed",
                        "args": ["--calib", minilm_spec("calib"), "--calib-size", "256", "--batch-size", "16",
                                 "--eval", minilm_spec("eval"), "--effort", "fast"], "runs": 1},
    }


def timed(cmd: list) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {shlex.join(cmd)}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def held_out(name: str, samples: int) -> dict:
    if name.startswith("fm_"):
        x, _ = R.load_fashion_mnist("test", limit=samples)
        return {"input": x}
    d = R.minilm_data_dir()
    return {k: np.load(d / f"eval_{k}.npy")[:samples] for k in ["input_ids", "attention_mask"]}


def judge(model: Path, quantized: Path, feeds: dict) -> dict:
    f = next(iter(R.run_ort(model, feeds).values()))
    q = next(iter(R.run_ort(quantized, feeds).values()))
    f2, q2 = f.reshape(f.shape[0], -1).astype(np.float64), q.reshape(q.shape[0], -1).astype(np.float64)
    out = {"cosine": float(R.row_cosine(q2, f2).mean())}
    if model.name.startswith("fm_"):
        def log_softmax(z):
            z = z - z.max(1, keepdims=True)
            return z - np.log(np.exp(z).sum(1, keepdims=True))
        lp, lq = log_softmax(f2), log_softmax(q2)
        out["kl"] = float((np.exp(lp) * (lp - lq)).sum(1).mean())
    else:
        out["mse"] = float(((q2 - f2) ** 2).mean())
    return out


def run_case(name: str, case: dict, a, work: Path) -> dict:
    model = R.models_dir() / f"{case['model']}.onnx"
    args = case["args"] + ["--samples", str(a.samples)]
    ptq_out, page, js = work / f"{name}.onnx", work / f"{name}.html", work / f"{name}.json"
    # The ptq run explained: the same options without debug's held-out data (no evaluation).
    ptq_args = list(case["args"])
    i = ptq_args.index("--eval")
    del ptq_args[i:i + 2]
    ptq = [str(a.binary), "ptq", str(model), *ptq_args, "-o", str(ptq_out), "--quiet"]
    debug = [str(a.binary), "debug", str(model), *args, "-o", str(page), "--json", str(js), "--quiet"]
    runs = case["runs"] or a.runs
    times = {"ptq": [], "debug": []}
    for i in range(runs):
        times["ptq"].append(timed(ptq))
        times["debug"].append(timed(debug))
        print(f"  {name} run {i + 1}/{runs}: ptq {times['ptq'][-1]:.1f} s, debug {times['debug'][-1]:.1f} s", flush=True)
    report = json.loads(js.read_text())
    flow, diagnosis = report["flow"], report["run"]["diagnosis"]
    # The recommended command, run as printed.
    command = shlex.split(report["recommended_command"])
    rec_out = work / f"{name}.recommended.onnx"
    command[command.index("-o") + 1] = str(rec_out)
    subprocess.run([str(a.binary), *command[1:], "--quiet"], check=True, capture_output=True)
    feeds = held_out(case["model"], a.samples)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "model": case["model"], "args": args, "runs": runs, "seconds": times,
        "median_seconds": med, "debug_over_ptq": med["debug"] / med["ptq"],
        "causes": [{"kind": c["kind"], "quantizers": c["quantizers"], "measures": c["measures"],
                    "loss_share": c["lossShare"],
                    "depthwise": sum(r["depthwise"] for r in c["roles"]),
                    "residual_sums": sum(r["residualSum"] for r in c["roles"]),
                    "layernorm_inputs": sum("LayerNormalization" in r["readers"] for r in c["roles"])}
                   for c in diagnosis["causes"]],
        "variants": diagnosis["variants"],
        "baseline": flow["baseline"], "trials": flow["trials"],
        "front": [{"widened": t["fix"]["quantizers"], **t["measurement"], "recommended": t["kept"]}
                  for t in flow["mixedPrecisionFront"]],
        "recommended_fixes": flow["recommendedFixes"], "recommended_command": report["recommended_command"],
        "recommended_reported": flow["recommendedMeasurement"],
        "recommended_in_ort": judge(model, rec_out, feeds),
        "baseline_in_ort": judge(model, ptq_out, feeds),
    }


def print_table(result: dict) -> None:
    print(f"commit {result['commit']['head'][:12]}{' (dirty)' if result['commit']['dirty'] else ''}; "
          f"load average at start {result['loadavg']}; under load: {result['under_load'] or 'no'}")
    for name, r in result["cases"].items():
        c = r.get("commit", result["commit"])
        print(f"  {name}: commit {c['head'][:12]}{' (dirty)' if c['dirty'] else ''}; under load: {r.get('under_load', result['under_load']) or 'no'}")
    print("\n| case | runs | ptq s (median) | debug s (median) | debug / ptq | causes named | recommended fixes | loss reported | in ORT |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in result["cases"].items():
        causes = "; ".join(f"{c['kind']} x{len(c['quantizers'])}"
                           + (f" ({c['depthwise']} depthwise)" if c["depthwise"] else "")
                           + (f" ({c['residual_sums']} residual, {c['layernorm_inputs']} LayerNorm inputs)"
                              if c["kind"] == "activation outliers" else "") for c in r["causes"]) or "-"
        fixes = ", ".join(f["kind"] + (f" {f.get('rangeMethod') or f.get('quantizers') or ''}".rstrip()) for f in r["recommended_fixes"]) or "none"
        ort = r["recommended_in_ort"]
        print(f"| {name} | {r['runs']} | {r['median_seconds']['ptq']:.1f} | {r['median_seconds']['debug']:.1f} | "
              f"{r['debug_over_ptq']:.2f}x | {causes} | {fixes} | {r['recommended_reported']['loss']:.4g} "
              f"(cosine {r['recommended_reported']['cosine']:.5f}) | "
              + (f"KL {ort['kl']:.4g}" if "kl" in ort else f"MSE {ort['mse']:.4g}") + f", cosine {ort['cosine']:.5f} |")
    for name, r in result["cases"].items():
        print(f"\n{name}: front of mixed precision (widened activation quantizers: loss / output cosine)")
        print("  " + ", ".join(f"{p['widened']}: {p['loss']:.3g} / {p['cosine']:.5f}{' *' if p['recommended'] else ''}"
                               for p in r["front"]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["fm_resnet20", "fm_mobilenetv2_pt_w4a8", "minilm_w8a8"],
                    choices=list(cases(64)))
    ap.add_argument("--runs", type=int, default=3, help="ptq/debug pairs per fm_* case")
    ap.add_argument("--samples", type=int, default=64, help="held-out samples debug measures on")
    ap.add_argument("--under-load", default="", help="say what else ran on the machine")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "debug.json")
    ap.add_argument("--table", action="store_true", help="print the table of --json and stop")
    ap.add_argument("--merge", action="store_true", help="keep the other cases already in --json (each case records its commit)")
    a = ap.parse_args()
    if a.table:
        print_table(json.loads(a.json.read_text()))
        return 0
    commit = R.git_checkout(R.lowbit_bin())
    result = {"benchmark": "bench_debug.py (issue 23: lowbit debug against ptq)", "commit": commit,
              "binary_sha256": R._sha256(R.lowbit_bin()), "binary_snapshot": "copied at the start; every command ran the copy",
              "env": R.describe_env(), "loadavg": os.getloadavg(), "under_load": a.under_load, "samples": a.samples,
              "cases": {}}
    if a.merge and a.json.exists():
        old = json.loads(a.json.read_text())
        result["cases"] = {k: v | {"commit": v.get("commit", old["commit"]), "under_load": v.get("under_load", old["under_load"])}
                           for k, v in old["cases"].items() if k not in a.cases}
    all_cases = cases(a.samples)
    with tempfile.TemporaryDirectory(prefix="bench-debug-") as tmp:
        a.binary = Path(tmp) / "lowbit"
        shutil.copy2(R.lowbit_bin(), a.binary)
        for name in a.cases:
            result["cases"][name] = run_case(name, all_cases[name], a, Path(tmp)) | {"commit": commit, "under_load": a.under_load}
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(result, indent=1))
    print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
