"""Shared reference helpers for lowbit's Python tests and benchmarks.

Importable from the tests (conftest puts this folder on sys.path) and from benchmarks/ (same).
Only needs `onnx`, `onnxruntime` and `numpy`:

- where things are: repo root, the shared models/data folder, the lowbit binary;
- `model_path(name)`: a runnable ONNX file, filling the torchvision `*.graph.onnx` files with
  seeded weights once into `<repo>/.cache/models/` (reused while the source and seed match);
- `run_ort(...)`: ONNX Runtime (CPUExecutionProvider) outputs by name, optionally batched;
- `load_fashion_mnist(split, limit)` / `load_fashion_mnist_test()`: normalized Fashion-MNIST read
  with a tiny IDX reader;
- `run_lowbit(...)`: run the CLI with a timeout and return the CompletedProcess;
- comparison metrics used by the parity tests;
- helpers for the quantized (QDQ) files written by `lowbit ptq`: the output quantizer as written
  in the file and as listed in the ptq JSON, errors in quantization steps, initializer types.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530

# Models used by tests/benchmarks: short name -> (file in shared/models, needs filling?)
FM_MODELS = ("fm_resnet20", "fm_mobilenetv2", "fm_inception")
TORCHVISION_MODELS = ("resnet18", "mobilenet_v2", "resnet50", "inception_v3")
MINILM = "minilm_l6_embed"
ALL_MODELS = FM_MODELS + TORCHVISION_MODELS + (MINILM,)


# --------------------------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------------------------


def shared_dir() -> Path:
    """The read-only shared folder: env LOWBIT_SHARED, default <repo>/../shared."""
    env = os.environ.get("LOWBIT_SHARED")
    return Path(env).resolve() if env else (REPO_ROOT / ".." / "shared").resolve()


def models_dir() -> Path:
    return shared_dir() / "models"


def minilm_data_dir() -> Path:
    return shared_dir() / "data" / "minilm"


def cache_dir() -> Path:
    """Where filled models are kept: env LOWBIT_MODEL_CACHE, default <repo>/.cache/models."""
    env = os.environ.get("LOWBIT_MODEL_CACHE")
    return Path(env).resolve() if env else REPO_ROOT / ".cache" / "models"


def git_checkout(binary: Path | None = None) -> dict:
    """The checkout a benchmark ran from: {"head": HEAD's commit, "dirty": tracked files differ,
    "binary_older_than_sources": the lowbit binary (`binary`, default `lowbit_bin()`) was last
    written before some tracked file under Sources/ or Package.swift, i.e. it may not be the
    build of this checkout}; the last is left out when the binary does not exist."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    result = {"head": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    b = Path(binary) if binary else lowbit_bin()
    if b.is_file():
        sources = [REPO_ROOT / f for f in git("ls-files", "Sources", "Package.swift").splitlines()]
        newest = max((f.stat().st_mtime for f in sources if f.is_file()), default=0)
        result["binary_older_than_sources"] = b.stat().st_mtime < newest
    return result


def lowbit_bin() -> Path:
    """The CLI binary: env LOWBIT_BIN, default <repo>/.build/release/lowbit."""
    env = os.environ.get("LOWBIT_BIN")
    return Path(env).resolve() if env else REPO_ROOT / ".build" / "release" / "lowbit"


def fm_reference() -> dict:
    """fm_models.json: per model the file, the reference ORT top-1 and more."""
    return json.loads((models_dir() / "fm_models.json").read_text())


# --------------------------------------------------------------------------------------------
# Filled torchvision models
# --------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def filled_model(name: str, seed: int = 0, cache: Optional[Path] = None) -> Path:
    """`<cache>/<name>.onnx` made from shared `<name>.graph.onnx` by shared fill_weights.py.

    Reused when present and its sidecar records the same source hash and seed; otherwise rebuilt
    (written to a temporary name and renamed, so concurrent runs never see a partial file).
    """
    cache = Path(cache) if cache else cache_dir()
    src = models_dir() / f"{name}.graph.onnx"
    if not src.is_file():
        raise FileNotFoundError(f"no graph model {src}")
    dst = cache / f"{name}.onnx"
    meta_path = cache / f"{name}.onnx.json"
    want = {"source": src.name, "source_sha256": _sha256(src), "seed": seed}
    if dst.is_file() and meta_path.is_file():
        try:
            if json.loads(meta_path.read_text()) == want:
                return dst
        except (OSError, ValueError):
            pass
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".onnx", dir=cache)
    os.close(fd)
    try:
        subprocess.run(
            [sys.executable, str(models_dir() / "fill_weights.py"), str(src), tmp,
             "--seed", str(seed)],
            check=True, capture_output=True, text=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"fill_weights.py failed for {name}:\n{e.stderr}") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    meta_path.write_text(json.dumps(want, indent=1))
    return dst


def model_path(name: str, seed: int = 0) -> Path:
    """A runnable ONNX file for a short model name (see ALL_MODELS)."""
    if name in TORCHVISION_MODELS:
        return filled_model(name, seed=seed)
    p = models_dir() / f"{name}.onnx"
    if not p.is_file():
        raise FileNotFoundError(f"no model {p}")
    return p


# --------------------------------------------------------------------------------------------
# ONNX Runtime
# --------------------------------------------------------------------------------------------


def ort_session(path: Path, threads: Optional[int] = None, optimization: Optional[str] = None):
    """A CPUExecutionProvider session. `optimization` names a GraphOptimizationLevel member
    (e.g. "ORT_DISABLE_ALL"); None keeps ONNX Runtime's default (all optimizations)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    if optimization:
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, optimization)
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def run_ort(path_or_session, feeds: Mapping[str, np.ndarray], batch_size: Optional[int] = None,
            threads: Optional[int] = None) -> Dict[str, np.ndarray]:
    """All graph outputs by name. With batch_size, feeds are split along axis 0 and the outputs
    concatenated (as `lowbit run --save-outputs` does)."""
    sess = path_or_session if hasattr(path_or_session, "run") else ort_session(
        path_or_session, threads)
    names = [o.name for o in sess.get_outputs()]
    n = len(next(iter(feeds.values())))
    step = batch_size or n
    parts: List[List[np.ndarray]] = [[] for _ in names]
    for start in range(0, n, step):
        outs = sess.run(names, {k: v[start:start + step] for k, v in feeds.items()})
        for acc, o in zip(parts, outs):
            acc.append(o)
    return {name: np.concatenate(acc, axis=0) for name, acc in zip(names, parts)}


def ort_top1(path_or_session, x: np.ndarray, labels: np.ndarray, batch_size: int = 1000):
    """(top-1 in percent, argmax predictions) of the first output over x."""
    sess = path_or_session if hasattr(path_or_session, "run") else ort_session(path_or_session)
    first_in = sess.get_inputs()[0].name
    first_out = sess.get_outputs()[0].name
    logits = run_ort(sess, {first_in: x}, batch_size=batch_size)[first_out]
    pred = logits.argmax(axis=1)
    return float((pred == labels).mean() * 100.0), pred


def random_feeds(path_or_session, batch: int, seed: int = 0) -> Dict[str, np.ndarray]:
    """Seeded standard-normal float32 data for every (float) graph input; symbolic dims -> batch
    for the first one (other symbolic dims are not supported here)."""
    sess = path_or_session if hasattr(path_or_session, "run") else ort_session(path_or_session)
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in sess.get_inputs():
        if inp.type != "tensor(float)":
            raise ValueError(f"random_feeds: input {inp.name} is {inp.type}, not float")
        shape = [d if isinstance(d, int) and d > 0 else batch for d in inp.shape]
        feeds[inp.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


# --------------------------------------------------------------------------------------------
# Fashion-MNIST (IDX files)
# --------------------------------------------------------------------------------------------

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def load_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic 0 0 dtype ndim, big-endian int32 dims, data."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}i", data[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    count = int(np.prod(dims)) if dims else 1
    body = np.frombuffer(data, dtype=dtype, count=count, offset=4 + 4 * ndim)
    return body.reshape(dims).astype(dtype.newbyteorder("="))


def load_fashion_mnist(split: str = "test", limit: Optional[int] = None,
                       root: Path = FASHION_MNIST_DIR):
    """(x float32 [N,1,28,28] normalized as (p/255 - 0.2860)/0.3530, labels int64 [N]) for split
    "test" (10,000 images) or "train" (60,000); `limit` keeps the first N, as the CLI's
    `fashion-mnist:SPLIT:N` does."""
    prefix = {"test": "t10k", "train": "train"}[split]
    images = load_idx(Path(root) / f"{prefix}-images-idx3-ubyte.gz")
    labels = load_idx(Path(root) / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = images.astype(np.float32) / np.float32(255.0)
    x = (x - np.float32(FASHION_MNIST_MEAN)) / np.float32(FASHION_MNIST_STD)
    return x[:, None, :, :].astype(np.float32), labels


def load_fashion_mnist_test(root: Path = FASHION_MNIST_DIR):
    """(x float32 [10000,1,28,28] normalized as (p/255 - 0.2860)/0.3530, labels int64 [10000])."""
    return load_fashion_mnist("test", root=root)


# --------------------------------------------------------------------------------------------
# MiniLM data
# --------------------------------------------------------------------------------------------


def minilm_eval_feeds(rows: int = 8, split: str = "eval") -> Dict[str, np.ndarray]:
    d = minilm_data_dir()
    return {k: np.load(d / f"{split}_{k}.npy")[:rows].astype(np.int64)
            for k in ("input_ids", "attention_mask")}


# --------------------------------------------------------------------------------------------
# The lowbit CLI
# --------------------------------------------------------------------------------------------


def run_lowbit(args: Sequence[str], env: Optional[Mapping[str, str]] = None,
               timeout: float = 900, binary: Optional[Path] = None,
               cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """Run `lowbit ARGS...`; stdout/stderr captured as text. Raises on timeout."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    cmd = [str(binary or lowbit_bin()), *[str(a) for a in args]]
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout,
                          cwd=str(cwd or REPO_ROOT))


# Text that means the process crashed rather than reporting an error (Swift runtime traps,
# signal messages printed by a wrapper, a Python traceback from a script).
CRASH_MARKERS = (
    "Fatal error:",
    "Program crashed",
    "Stack dump:",
    "Current stack trace:",
    "Segmentation fault",
    "Illegal instruction",
    "Trace/breakpoint trap",
    "Traceback (most recent call last)",
)


def describe_proc(proc: subprocess.CompletedProcess, limit: int = 2400) -> str:
    """The command, its exit status and (the ends of) its stderr, for assertion messages."""
    cmd = " ".join(str(a) for a in proc.args)
    err = (proc.stderr or "").strip()
    if len(err) > limit:
        err = err[: limit * 3 // 4] + "\n...\n" + err[-limit // 4:]
    return f"`{cmd}` exited {proc.returncode}\n--- stderr ---\n{err}"


def npy_spec(arrays: Mapping[str, Path]) -> str:
    """`npy:name=a.npy,name2=b.npy` for named inputs."""
    return "npy:" + ",".join(f"{k}={v}" for k, v in arrays.items())


def save_feeds(feeds: Mapping[str, np.ndarray], folder: Path, prefix: str = "in") -> str:
    """Write each array to `folder/<prefix>_<input>.npy`; return the data spec: the one-array form
    `npy:FILE` for a single input, else `npy:name=FILE,...`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for k, v in feeds.items():
        files[k] = folder / f"{prefix}_{k.replace('/', '_')}.npy"
        np.save(files[k], v)
    return f"npy:{next(iter(files.values()))}" if len(files) == 1 else npy_spec(files)


def load_saved_outputs(path: Path) -> Dict[str, np.ndarray]:
    """Outputs written by --save-outputs: an .npz by name, or an .npy as {'': array}."""
    if str(path).endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    return {"": np.load(path, allow_pickle=False)}


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def max_rel_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max|a - b| / max|b| (b = reference), in float64; inf when shapes differ or values are
    non-finite."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    if a.shape != b.shape or not np.isfinite(a).all():
        return float("inf")
    scale = max(float(np.abs(b).max(initial=0.0)), 1e-30)
    return float(np.abs(a - b).max(initial=0.0) / scale)


def row_cosine(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Cosine similarity per row (first axis) in float64."""
    a = np.asarray(actual, dtype=np.float64).reshape(len(actual), -1)
    b = np.asarray(expected, dtype=np.float64).reshape(len(expected), -1)
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return num / np.maximum(den, 1e-30)


def step_error(actual: np.ndarray, expected: np.ndarray, scale) -> float:
    """max|a - b| / scale in float64: the largest difference in quantization steps of a
    per-tensor quantizer (inf when shapes differ or values are non-finite)."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    if a.shape != b.shape or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("inf")
    return float(np.abs(a - b).max(initial=0.0) / float(np.max(scale)))


def argmax_agreement(actual: np.ndarray, expected: np.ndarray) -> float:
    """Fraction of rows whose arg-max over the last axis agrees."""
    a, b = np.asarray(actual), np.asarray(expected)
    return float((a.argmax(axis=-1) == b.argmax(axis=-1)).mean())


# --------------------------------------------------------------------------------------------
# Quantized (QDQ) files written by `lowbit ptq`
# --------------------------------------------------------------------------------------------


def _load_onnx(model):
    import onnx

    return model if hasattr(model, "graph") else onnx.load(str(model))


def qdq_output_quantizer(model, output: str) -> Optional[dict]:
    """The quantizer on graph output `output` as written in the file: the DequantizeLinear that
    writes it, with scale / zero point read from the initializers ({"scale", "zero_point",
    "scale_name", "zero_point_name", "axis"}); None when no DequantizeLinear writes it."""
    from onnx import numpy_helper

    m = _load_onnx(model)
    init = {t.name: t for t in m.graph.initializer}
    for node in m.graph.node:
        if node.op_type == "DequantizeLinear" and output in node.output:
            scale_name = node.input[1]
            zp_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
            if scale_name not in init:
                raise ValueError(f"scale {scale_name!r} of the DequantizeLinear writing "
                                 f"{output!r} is not an initializer")
            return {
                "scale": numpy_helper.to_array(init[scale_name]).astype(np.float64),
                "zero_point": numpy_helper.to_array(init[zp_name]) if zp_name in init else None,
                "scale_name": scale_name,
                "zero_point_name": zp_name,
                "axis": next((a.i for a in node.attribute if a.name == "axis"), None),
            }
    return None


def ptq_quantizer(report: Mapping, name: str, kind: str = "activation") -> Optional[dict]:
    """The entry of `report["quantizers"]` (the `lowbit ptq --json` report) of kind `kind` that
    quantizes the value `name`, or None."""
    for q in report.get("quantizers", []):
        if q.get("name") == name and q.get("kind") == kind:
            return q
    return None


def initializer_types(model) -> Dict[str, int]:
    """How many initializers of each element type, by TensorProto name (e.g. "INT4")."""
    import onnx

    counts: Dict[str, int] = {}
    for t in _load_onnx(model).graph.initializer:
        key = onnx.TensorProto.DataType.Name(t.data_type)
        counts[key] = counts.get(key, 0) + 1
    return counts


def qdq_stored_types(model) -> Dict[str, Dict[str, int]]:
    """Element types (TensorProto names, with counts) of the quantized tensors stored in the
    file: "weights" = initializers fed to a DequantizeLinear with a per-channel or per-tensor
    float scale that are not 32-bit (the int32 biases are counted under "biases"), and
    "zero_points" = zero points of the QuantizeLinear nodes applied to activations."""
    import onnx

    m = _load_onnx(model)
    init = {t.name: t for t in m.graph.initializer}
    name = onnx.TensorProto.DataType.Name
    out: Dict[str, Dict[str, int]] = {"weights": {}, "biases": {}, "zero_points": {}}

    def count(role, t):
        out[role][name(t)] = out[role].get(name(t), 0) + 1

    for node in m.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in init:
            t = init[node.input[0]].data_type
            count("biases" if t == onnx.TensorProto.INT32 else "weights", t)
        elif (node.op_type == "QuantizeLinear" and node.input[0] not in init
              and len(node.input) > 2 and node.input[2] in init):
            count("zero_points", init[node.input[2]].data_type)
    return out


def describe_env(threads: Optional[int] = None) -> dict:
    import platform

    import onnxruntime as ort

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "threads": threads,
            "onnxruntime": ort.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


__all__: Iterable[str] = [n for n in dir() if not n.startswith("_")]
