"""FP32 parity of `lowbit run` with ONNX Runtime on the 8 test models.

Per output tensor: max|lowbit - ort| / max|ort| <= 1e-4. For MiniLM (L2-normalized embeddings):
cosine similarity per row >= 0.99999.
Inputs: seeded standard-normal data (batch 2) for the image models, the first 8 rows of the real
tokenized MiniLM eval set.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import ort_reference as R

REL_TOL = 1e-4
COS_TOL = 0.99999
BATCH = 2


def _feeds(name, path):
    if name == R.MINILM:
        return R.minilm_eval_feeds(8)
    return R.random_feeds(path, batch=BATCH, seed=0)


def _save(feeds, tmp_path):
    files = {}
    for k, v in feeds.items():
        files[k] = tmp_path / f"in_{k}.npy"
        np.save(files[k], v)
    return files


def _compare(name, got, want):
    assert sorted(got) == sorted(want), f"{name}: output names {sorted(got)} != {sorted(want)}"
    report = []
    for k, ref in want.items():
        out = got[k]
        assert out.shape == ref.shape, f"{name}/{k}: shape {out.shape} != ORT {ref.shape}"
        assert out.dtype == ref.dtype, f"{name}/{k}: dtype {out.dtype} != ORT {ref.dtype}"
        assert np.isfinite(out).all(), f"{name}/{k}: non-finite values in lowbit output"
        rel = R.max_rel_error(out, ref)
        if name == R.MINILM:
            cos = R.row_cosine(out, ref)
            report.append(f"{k}: min cosine {cos.min():.8f}, max rel err {rel:.3g}")
            assert cos.min() >= COS_TOL, (
                f"{name}/{k}: min row cosine {cos.min():.8f} < {COS_TOL} "
                f"(per row: {np.array2string(cos, precision=7)}; max rel err {rel:.3g})")
        else:
            report.append(f"{k}: max rel err {rel:.3g}")
            assert rel <= REL_TOL, (
                f"{name}/{k}: max|a-b|/max|b| = {rel:.3g} > {REL_TOL} "
                f"(max|b| = {np.abs(ref).max():.4g}, max|a-b| = "
                f"{np.abs(out.astype(np.float64) - ref).max():.4g})")
    print(f"{name}: " + "; ".join(report))


@pytest.mark.parametrize("name", R.ALL_MODELS)
def test_parity_with_ort(name, models, lowbit, tmp_path):
    path = models[name]
    feeds = _feeds(name, path)
    files = _save(feeds, tmp_path)
    if len(files) == 1:
        spec = f"npy:{next(iter(files.values()))}"  # the one-array-for-the-first-input form
    else:
        spec = R.npy_spec(files)
    out = tmp_path / "out.npz"
    report = lowbit.run_json(path, spec, tmp_path, "--save-outputs", out)
    assert out.is_file(), f"--save-outputs {out} was not written"
    n = len(next(iter(feeds.values())))
    assert report["samples"] == n, f"JSON samples {report['samples']} != {n}"
    assert report.get("top1") is None, f"no labels given, top1 should be null: {report}"
    _compare(name, R.load_saved_outputs(out), R.run_ort(path, feeds))


def test_npy_output_batched_with_remainder(models, lowbit, tmp_path):
    """5 samples at --batch-size 2 (a partial last batch) saved as .npy = first output."""
    path = models["fm_resnet20"]
    feeds = R.random_feeds(path, batch=5, seed=1)
    files = _save(feeds, tmp_path)
    out = tmp_path / "out.npy"
    report = lowbit.run_json(path, f"npy:{files['input']}", tmp_path,
                             "--batch-size", "2", "--save-outputs", out)
    assert report["batch_size"] == 2, report
    assert report["samples"] == 5, report
    got = np.load(out)
    want = R.run_ort(path, feeds)["logits"]
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    assert R.max_rel_error(got, want) <= REL_TOL, R.max_rel_error(got, want)


def test_limit(models, lowbit, tmp_path):
    """--limit 3 over 5 samples: 3 rows, equal to ORT on the first 3."""
    path = models["fm_resnet20"]
    feeds = R.random_feeds(path, batch=5, seed=2)
    files = _save(feeds, tmp_path)
    out = tmp_path / "out.npy"
    report = lowbit.run_json(path, f"npy:{files['input']}", tmp_path,
                             "--limit", "3", "--save-outputs", out)
    assert report["samples"] == 3, report
    got = np.load(out)
    want = R.run_ort(path, {"input": feeds["input"][:3]})["logits"]
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    assert R.max_rel_error(got, want) <= REL_TOL, R.max_rel_error(got, want)


def test_limit_above_sample_count(models, lowbit, tmp_path):
    """--limit larger than the data set runs every sample (it is an upper bound)."""
    path = models["fm_resnet20"]
    feeds = R.random_feeds(path, batch=3, seed=4)
    files = _save(feeds, tmp_path)
    out = tmp_path / "out.npy"
    report = lowbit.run_json(path, f"npy:{files['input']}", tmp_path,
                             "--limit", "16", "--save-outputs", out)
    assert report["samples"] == 3, report
    assert np.load(out).shape == (3, 10)


def test_named_inputs_in_any_order(models, lowbit, tmp_path):
    """Named inputs are matched by name, not position: attention_mask listed first."""
    path = models[R.MINILM]
    feeds = R.minilm_eval_feeds(4)
    files = _save(feeds, tmp_path)
    spec = R.npy_spec({"attention_mask": files["attention_mask"],
                       "input_ids": files["input_ids"]})
    out = tmp_path / "out.npz"
    lowbit.run_json(path, spec, tmp_path, "--batch-size", "3", "--save-outputs", out)
    got = R.load_saved_outputs(out)["embedding"]
    want = R.run_ort(path, feeds)["embedding"]
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    cos = R.row_cosine(got, want)
    assert cos.min() >= COS_TOL, cos


def test_run_json_fields(models, lowbit, tmp_path):
    path = models["fm_resnet20"]
    files = _save(R.random_feeds(path, batch=4, seed=3), tmp_path)
    report = lowbit.run_json(path, f"npy:{files['input']}", tmp_path, "--batch-size", "4")
    types = {"model": str, "samples": int, "seconds": (int, float),
             "samples_per_second": (int, float), "batch_size": int, "threads": int}
    for key, t in types.items():
        assert key in report, f"JSON lacks {key!r}: {json.dumps(report)}"
        assert isinstance(report[key], t) and not isinstance(report[key], bool), (key, report)
    assert "top1" in report, f"JSON lacks 'top1' (should be null without labels): {report}"
    assert report["top1"] is None, f"no labels given, top1 should be null: {report}"
    assert report["samples"] == 4 and report["batch_size"] == 4, report
    assert report["threads"] >= 1, report
    assert report["seconds"] >= 0 and report["samples_per_second"] > 0, report
