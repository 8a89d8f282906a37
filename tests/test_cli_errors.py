"""Bad input makes `lowbit` exit with status 1 and an `error:` line on stderr: never a crash
(signal, Swift trap), and no half-written --save-outputs / --json file.
"""
from __future__ import annotations

import numpy as np
import pytest

from ort_reference import CRASH_MARKERS, describe_proc as describe


def _missing_model(tmp, models):
    return tmp / "does_not_exist.onnx", None


def _text_as_onnx(tmp, models):
    p = tmp / "notes.onnx"
    p.write_text("this is a text file, not an ONNX model\n" * 20)
    return p, None


def _truncated_model(tmp, models):
    data = models["fm_resnet20"].read_bytes()
    p = tmp / "truncated.onnx"
    p.write_bytes(data[: len(data) // 2])
    return p, None


def _empty_model(tmp, models):
    p = tmp / "empty.onnx"
    p.write_bytes(b"")
    return p, None


def _wrong_shape(tmp, models):
    x = np.random.default_rng(0).standard_normal((2, 3, 28, 28)).astype(np.float32)
    np.save(tmp / "x.npy", x)
    return models["fm_resnet20"], f"npy:{tmp / 'x.npy'}"


def _wrong_rank(tmp, models):
    x = np.random.default_rng(0).standard_normal((2, 784)).astype(np.float32)
    np.save(tmp / "x.npy", x)
    return models["fm_resnet20"], f"npy:{tmp / 'x.npy'}"


def _nan_input(tmp, models):
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    x[1, 0, 5, 7] = np.nan
    np.save(tmp / "x.npy", x)
    return models["fm_resnet20"], f"npy:{tmp / 'x.npy'}"


def _unknown_scheme(tmp, models):
    return models["fm_resnet20"], "bogus:whatever"


def _missing_npy(tmp, models):
    return models["fm_resnet20"], f"npy:{tmp / 'nope.npy'}"


def _not_an_npy(tmp, models):
    (tmp / "x.npy").write_text("not numpy\n")
    return models["fm_resnet20"], f"npy:{tmp / 'x.npy'}"


def _label_count_mismatch(tmp, models):
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    np.save(tmp / "x.npy", x)
    np.save(tmp / "labels.npy", np.arange(3, dtype=np.int64))
    return models["fm_resnet20"], f"npy:{tmp / 'x.npy'},{tmp / 'labels.npy'}"


def _unknown_input_name(tmp, models):
    np.save(tmp / "ids.npy", np.ones((2, 8), np.int64))
    np.save(tmp / "mask.npy", np.ones((2, 8), np.int64))
    return models["minilm_l6_embed"], (
        f"npy:input_ids={tmp / 'ids.npy'},no_such_input={tmp / 'mask.npy'}")


RUN_CASES = {
    "missing-model": _missing_model,
    "text-file-as-onnx": _text_as_onnx,
    "truncated-model": _truncated_model,
    "empty-model": _empty_model,
    "wrong-input-shape": _wrong_shape,
    "wrong-input-rank": _wrong_rank,
    "nan-in-input": _nan_input,
    "unknown-data-scheme": _unknown_scheme,
    "missing-npy": _missing_npy,
    "not-an-npy": _not_an_npy,
    "label-count-mismatch": _label_count_mismatch,
    "unknown-input-name": _unknown_input_name,
}


def assert_clean_error(proc):
    msg = describe(proc)
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {msg}"
    assert proc.returncode == 1, f"expected exit status 1: {msg}"
    lines = proc.stderr.splitlines()
    assert any(line.startswith("error:") for line in lines), (
        f"no stderr line starts with 'error:': {msg}")
    for marker in CRASH_MARKERS:
        assert marker not in proc.stderr and marker not in proc.stdout, (
            f"crash marker {marker!r} in output: {msg}")


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_run_rejects_bad_input(case, models, lowbit, tmp_path):
    model, data = RUN_CASES[case](tmp_path, models)
    if data is None:
        data = "fashion-mnist:test"
    out_npz = tmp_path / "out" / "outputs.npz"
    out_npy = tmp_path / "outputs.npy"
    out_json = tmp_path / "report.json"
    (tmp_path / "out").mkdir()
    for save in (out_npz, out_npy):
        proc = lowbit("run", model, "--data", data, "--save-outputs", save,
                      "--json", out_json, timeout=300)
        assert_clean_error(proc)
        assert not save.exists(), f"{save} created although the run failed"
        assert not out_json.exists(), f"{out_json} created although the run failed"


@pytest.mark.parametrize("case", ["missing-model", "text-file-as-onnx", "truncated-model",
                                  "empty-model"])
def test_info_rejects_bad_model(case, models, lowbit, tmp_path):
    model, _ = RUN_CASES[case](tmp_path, models)
    for extra in ((), ("--json",)):
        proc = lowbit("info", model, *extra, timeout=120)
        assert_clean_error(proc)


USAGE_CASES = {
    "unknown-subcommand": ["frobnicate"],
    "zero-batch-size": ["run", "{model}", "--data", "fashion-mnist:test", "--batch-size", "0"],
    "non-numeric-batch-size": ["run", "{model}", "--data", "fashion-mnist:test",
                               "--batch-size", "abc"],
    "negative-limit": ["run", "{model}", "--data", "fashion-mnist:test", "--limit", "-3"],
    "missing-data-option": ["run", "{model}"],
    "bad-output-extension": ["run", "{model}", "--data", "fashion-mnist:test",
                             "--save-outputs", "{tmp}/outputs.txt"],
}


@pytest.mark.parametrize("case", list(USAGE_CASES))
def test_usage_errors(case, models, lowbit, tmp_path):
    """Command-line mistakes: a non-zero status (argument-parser usage errors may use 64), an
    `error:` line (any case) and no output files; never a crash."""
    args = [a.format(model=models["fm_resnet20"], tmp=tmp_path) for a in USAGE_CASES[case]]
    if args[0] == "run" and "--save-outputs" not in args:
        args += ["--save-outputs", str(tmp_path / "outputs.npy")]
    args += ["--json", str(tmp_path / "report.json")] if args[0] == "run" else []
    proc = lowbit(*args, timeout=120)
    msg = describe(proc)
    assert proc.returncode > 0, msg
    assert any(line.lower().startswith("error:") for line in proc.stderr.splitlines()), msg
    for marker in CRASH_MARKERS:
        assert marker not in proc.stderr, f"crash marker {marker!r}: {msg}"
    assert list(tmp_path.iterdir()) == [], f"files left behind: {list(tmp_path.iterdir())}"
