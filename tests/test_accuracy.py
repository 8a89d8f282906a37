"""Fashion-MNIST top-1 of the three trained fm_* models: `lowbit run --data fashion-mnist:test`
reproduces the reference in shared/models/fm_models.json (within 0.01 points = 1 image of 10,000),
ONNX Runtime on the same data (read here by a small IDX reader) does too, and both make the same
predictions.
"""
from __future__ import annotations

import numpy as np
import pytest

import ort_reference as R

TOP1_TOL = 0.01  # percentage points
N_TEST = 10000


@pytest.fixture(scope="module")
def reference(shared):
    return R.fm_reference()


@pytest.fixture(scope="module")
def lowbit_fm_runs(models, lowbit, tmp_path_factory):
    """One `lowbit run` per fm model over the whole test set; cached for the module."""
    cache = {}

    def get(name):
        if name not in cache:
            tmp = tmp_path_factory.mktemp(name)
            logits = tmp / "logits.npy"
            report = lowbit.run_json(models[name], "fashion-mnist:test", tmp,
                                     "--save-outputs", logits)
            cache[name] = (report, np.load(logits))
        return cache[name]

    return get


@pytest.fixture(scope="module")
def ort_fm(models, fashion_mnist_test):
    cache = {}

    def get(name):
        if name not in cache:
            x, labels = fashion_mnist_test
            cache[name] = R.ort_top1(models[name], x, labels)
        return cache[name]

    return get


@pytest.mark.parametrize("name", R.FM_MODELS)
def test_lowbit_top1_matches_reference(name, reference, lowbit_fm_runs):
    report, _ = lowbit_fm_runs(name)
    want = reference[name]["fp32_top1_ort"]
    assert report["samples"] == N_TEST, report
    assert report["top1"] is not None, f"labelled data but top1 is null: {report}"
    assert abs(report["top1"] - want) <= TOP1_TOL, (
        f"{name}: lowbit top-1 {report['top1']} vs reference {want}")
    print(f"{name}: lowbit top-1 {report['top1']:.2f} (reference {want:.2f}), "
          f"{report['samples_per_second']:.0f} samples/s")


@pytest.mark.parametrize("name", R.FM_MODELS)
def test_ort_top1_matches_reference(name, reference, ort_fm):
    """Checks this test's own data pipeline (IDX reader, normalization) against the reference."""
    top1, _ = ort_fm(name)
    want = reference[name]["fp32_top1_ort"]
    assert abs(top1 - want) <= TOP1_TOL, f"{name}: ORT top-1 {top1} vs reference {want}"
    print(f"{name}: ORT top-1 {top1:.2f} (reference {want:.2f})")


@pytest.mark.parametrize("name", R.FM_MODELS)
def test_lowbit_logits_match_ort(name, lowbit_fm_runs, ort_fm, models, fashion_mnist_test):
    """Same logits (max rel err <= 1e-4) and at most 1 differing prediction over 10,000."""
    _, logits = lowbit_fm_runs(name)
    assert logits.shape == (N_TEST, 10), logits.shape
    x, _ = fashion_mnist_test
    want = R.run_ort(models[name], {"input": x}, batch_size=1000)["logits"]
    rel = R.max_rel_error(logits, want)
    _, ort_pred = ort_fm(name)
    differ = int((logits.argmax(axis=1) != ort_pred).sum())
    print(f"{name}: max rel err {rel:.3g}, {differ} differing predictions")
    assert rel <= 1e-4, f"{name}: logits max rel err {rel:.3g} vs ORT"
    assert differ <= 1, f"{name}: {differ} predictions differ from ORT"


def test_npy_with_labels(models, lowbit, fashion_mnist_test, tmp_path):
    """`npy:x.npy,labels.npy`: top-1 over the first 500 test images equals ORT's."""
    x, labels = fashion_mnist_test
    x, labels = x[:500], labels[:500]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "labels.npy", labels)
    path = models["fm_inception"]
    report = lowbit.run_json(path, f"npy:{tmp_path / 'x.npy'},{tmp_path / 'labels.npy'}",
                             tmp_path, "--batch-size", "64")
    top1, _ = R.ort_top1(path, x, labels)
    assert report["samples"] == 500, report
    assert report["top1"] is not None and abs(report["top1"] - top1) <= 0.2 + 1e-9, (
        f"lowbit top-1 {report['top1']} vs ORT {top1} on 500 images")
