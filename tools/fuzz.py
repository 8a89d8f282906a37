#!/usr/bin/env python3
"""Coverage-guided fuzzing of lowbit's readers with libFuzzer and AddressSanitizer (`make fuzz`).

    python3 tools/fuzz.py [TARGET ...] [--seconds 60] [--json benchmarks/results/fuzz.json]

Targets (Fuzz/Sources/lowbit-fuzz): onnx (reader, validation, simplification, a run on zeros),
ops (one-node graphs of every implemented op built from the bytes: op type, attributes, shapes,
dtypes), npy, npz, idx, image (JPEG/PNG decoding and preprocessing), tokenizer (a tokenizer.json
and a text), text (a text file through the MiniLM tokenizer), config (QuantConfig and its data
object), checkpoint. Default: all.

Builds Fuzz/ with `-sanitize=fuzzer,address`, seeds `.cache/fuzz/corpus/TARGET` from
tools/fuzz_seeds.py, first replays every past finding kept in Tests/FuzzFindings/TARGET (each
must now be refused cleanly), then fuzzes each target for `--seconds` (10 s per-input timeout,
4 GiB memory limit), keeping new inputs in the corpus. A finding (crash, sanitizer report,
timeout, out of memory) lands in .cache/fuzz/findings/TARGET/ and the run exits non-zero: fix it,
copy the input to Tests/FuzzFindings/TARGET/ and add a test with the expected error. The JSON
gets, per target, executions, coverage (edges, libFuzzer's `cov`), features and findings, with
the commit it ran at.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ["onnx", "ops", "npy", "npz", "idx", "image", "tokenizer", "text", "config", "checkpoint"]
BINARY = ROOT / "Fuzz" / ".build" / "release" / "lowbit-fuzz"


def environment(target: str) -> dict:
    shared = Path(os.environ.get("LOWBIT_SHARED", ROOT / ".." / "shared"))
    return dict(os.environ, LOWBIT_FUZZ_TARGET=target,
                LOWBIT_FUZZ_TOKENIZER=str(shared / "data" / "minilm" / "tokenizer.json"))


def replay(target: str) -> dict:
    kept = sorted((ROOT / "Tests" / "FuzzFindings" / target).glob("*"))
    if not kept:
        return {"replayed": 0, "ok": True}
    proc = subprocess.run([str(BINARY), *map(str, kept)], env=environment(target), capture_output=True, text=True)
    return {"replayed": len(kept), "ok": proc.returncode == 0, "output": proc.stderr[-2000:] if proc.returncode else ""}


def fuzz(target: str, seconds: int) -> dict:
    corpus = ROOT / ".cache" / "fuzz" / "corpus" / target
    findings = ROOT / ".cache" / "fuzz" / "findings" / target
    corpus.mkdir(parents=True, exist_ok=True)
    findings.mkdir(parents=True, exist_ok=True)
    before = set(findings.iterdir())
    start = time.perf_counter()
    proc = subprocess.run(
        [str(BINARY), str(corpus), f"-max_total_time={seconds}", "-timeout=10", "-rss_limit_mb=4096", "-max_len=65536",
         f"-artifact_prefix={findings}/", "-print_final_stats=1"],
        env=environment(target), capture_output=True, text=True)
    log = proc.stderr
    stat = lambda name: int(m.group(1)) if (m := re.search(rf"stat::{name}:\s+(\d+)", log)) else None  # noqa: E731
    cov = [int(c) for c in re.findall(r"\bcov: (\d+)", log)]
    ft = [int(c) for c in re.findall(r"\bft: (\d+)", log)]
    new = sorted(str(p.relative_to(ROOT)) for p in set(findings.iterdir()) - before)
    return {"target": target, "seconds": round(time.perf_counter() - start, 1), "executions": stat("number_of_executed_units"),
            "edges": max(cov) if cov else None, "features": max(ft) if ft else None, "corpus_added": stat("new_units_added"),
            "exit_status": proc.returncode, "findings": new, "tail": "" if proc.returncode == 0 else log[-3000:]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("targets", nargs="*", default=TARGETS)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    subprocess.run(["swift", "build", "-c", "release", "-Xswiftc", "-sanitize=fuzzer,address"], cwd=ROOT / "Fuzz",
                   check=True, stdout=subprocess.DEVNULL)
    corpus = ROOT / ".cache" / "fuzz" / "corpus"
    if not (corpus / "onnx").is_dir():
        subprocess.run([sys.executable, str(ROOT / "tools" / "fuzz_seeds.py"), str(corpus)], check=True)
    rows, ok = [], True
    for t in args.targets:
        r = replay(t)
        row = fuzz(t, args.seconds)
        row["past_findings_replayed"] = r["replayed"]
        row["past_findings_ok"] = r["ok"]
        ok &= r["ok"] and row["exit_status"] == 0
        rows.append(row)
        print(f"{t:11s} {row['executions'] or 0:>11,} executions  {row['edges'] or 0:>6} edges  "
              f"{len(row['findings'])} findings  {r['replayed']} past findings replayed ({'ok' if r['ok'] else 'FAIL'})",
              flush=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    total = sum(r["executions"] or 0 for r in rows)
    print(f"total      {total:>11,} executions")
    if args.json:
        args.json.write_text(json.dumps({"benchmark": "fuzz", "commit": head, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                         "seconds_per_target": args.seconds, "total_executions": total, "rows": rows}, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
