"""Data-parallel `lowbit train` under `mpirun -np 2`: the loss falls, both ranks end with
identical parameters, only rank 0 prints and writes, K=2 reaches a loss comparable to one
process, a run resumed from rank 0's checkpoint with 2 ranks is byte-identical, and a failing
rank ends the whole job instead of leaving the other waiting.

Needs OpenMPI's `mpirun` (Debian's openmpi-bin, installed by `make test`); skipped without it.
A tiny CNN on a few hundred Fashion-MNIST images keeps it to seconds on 2 cores.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ort_reference as R
from ort_reference import CRASH_MARKERS, describe_proc as describe

MPIRUN = shutil.which("mpirun")
pytestmark = pytest.mark.skipif(MPIRUN is None, reason="mpirun not found (Debian: apt-get install openmpi-bin)")

TRAIN = ["--train", "fashion-mnist:train:2048", "--eval", "fashion-mnist:test:256", "--batch-size", "64",
         "--lr", "0.5", "--seed", "5"]


def tiny_cnn(path):
    """Conv(1->16, s2) BN ReLU Conv(16->32, s2) BN ReLU GlobalAveragePool Flatten Gemm(32->10), He init."""
    rng = np.random.default_rng(0)

    def he(*shape):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))).astype(np.float32)

    inits, nodes = [], []
    for i, (cin, cout) in enumerate([(1, 16), (16, 32)]):
        src = "x" if i == 0 else f"r{i - 1}"
        inits += [numpy_helper.from_array(he(cout, cin, 3, 3), f"conv{i}.w"),
                  numpy_helper.from_array(np.zeros(cout, np.float32), f"conv{i}.b"),
                  numpy_helper.from_array(np.ones(cout, np.float32), f"bn{i}.scale"),
                  numpy_helper.from_array(np.zeros(cout, np.float32), f"bn{i}.bias"),
                  numpy_helper.from_array(np.zeros(cout, np.float32), f"bn{i}.mean"),
                  numpy_helper.from_array(np.ones(cout, np.float32), f"bn{i}.var")]
        nodes += [helper.make_node("Conv", [src, f"conv{i}.w", f"conv{i}.b"], [f"c{i}"], pads=[1, 1, 1, 1],
                                   strides=[2, 2], name=f"conv{i}"),
                  helper.make_node("BatchNormalization", [f"c{i}", f"bn{i}.scale", f"bn{i}.bias", f"bn{i}.mean",
                                                          f"bn{i}.var"], [f"n{i}"], name=f"bn{i}"),
                  helper.make_node("Relu", [f"n{i}"], [f"r{i}"], name=f"relu{i}")]
    inits += [numpy_helper.from_array(he(10, 32), "fc.w"), numpy_helper.from_array(np.zeros(10, np.float32), "fc.b")]
    nodes += [helper.make_node("GlobalAveragePool", ["r1"], ["p"], name="pool"),
              helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
              helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["logits"], transB=1, name="fc")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def mpirun(lowbit, ranks, *args, timeout=120):
    """`mpirun -np RANKS lowbit ARGS...` on this machine (oversubscribed: 2 shared cores)."""
    cmd = [MPIRUN, "-np", str(ranks), "--oversubscribe"]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    cmd += [str(lowbit.binary), *[str(a) for a in args]]
    # Containers often forbid the cross-process memory attach OpenMPI tries first.
    env = dict(os.environ, OMPI_MCA_btl_vader_single_copy_mechanism="none", OMPI_MCA_rmaps_base_oversubscribe="1")
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=str(R.REPO_ROOT))


@pytest.fixture(scope="module")
def two_rank_run(lowbit, tmp_path_factory):
    """One 3-epoch run under `mpirun -np 2`, every rank dumping its final model."""
    tmp = tmp_path_factory.mktemp("mpi")
    model = tiny_cnn(tmp / "tiny.onnx")
    out, js, ck, ranks = tmp / "out" / "trained.onnx", tmp / "out" / "train.json", tmp / "out" / "ck", tmp / "ranks"
    out.parent.mkdir()
    proc = mpirun(lowbit, 2, "train", model, *TRAIN, "--epochs", "3", "-o", out, "--json", js,
                  "--checkpoint-dir", ck, "--rank-models", ranks)
    if proc.returncode != 0:
        pytest.fail(describe(proc), pytrace=False)
    return dict(tmp=tmp, model=model, out=out, json=js, ck=ck, ranks=ranks, proc=proc)


def test_two_ranks_end_identical_and_the_loss_falls(two_rank_run):
    r = two_rank_run
    report = json.loads(r["json"].read_text())
    assert report["ranks"] == 2, report
    losses = [e["loss"] for e in report["epochs"]]
    assert len(losses) == 3 and all(np.isfinite(losses)), losses
    assert losses[-1] < 0.8 * losses[0], f"the loss did not fall: {losses}"
    assert report["final"]["eval_top1"] > 40, report["final"]

    assert sorted(p.name for p in r["ranks"].iterdir()) == ["rank-0.onnx", "rank-1.onnx"]
    rank0, rank1 = (r["ranks"] / "rank-0.onnx").read_bytes(), (r["ranks"] / "rank-1.onnx").read_bytes()
    assert rank0 == rank1, "the ranks ended with different parameters or statistics"
    assert r["out"].read_bytes() == rank0, "rank 0's model differs from the written one"
    before = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(r["model"])).graph.initializer}
    after = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(r["out"])).graph.initializer}
    assert not np.array_equal(before["conv0.w"], after["conv0.w"]), "parameters did not move"
    assert not np.array_equal(before["bn1.mean"], after["bn1.mean"]), "running statistics did not move"


def test_only_rank_0_prints_and_writes(two_rank_run):
    r = two_rank_run
    out = r["proc"].stdout
    for marker in CRASH_MARKERS:
        assert marker not in out and marker not in r["proc"].stderr, describe(r["proc"])
    assert out.count("epoch 3/3") == 1 and out.count("wrote ") == 1, out
    assert "2 ranks" in out, out
    assert sorted(p.name for p in r["out"].parent.iterdir()) == ["ck", "train.json", "trained.onnx"]
    assert sorted(p.name for p in r["ck"].iterdir()) == ["epoch-0001.ckpt", "epoch-0002.ckpt", "epoch-0003.ckpt"]


def test_two_ranks_reach_a_loss_comparable_to_one_process(lowbit, two_rank_run, tmp_path):
    r = two_rank_run
    js = tmp_path / "one.json"
    lowbit.ok("train", r["model"], *TRAIN, "--epochs", "3", "-o", tmp_path / "one.onnx", "--json", js, "--quiet",
              timeout=120)
    one = json.loads(js.read_text())
    two = json.loads(r["json"].read_text())
    assert one["ranks"] == 1
    l1, l2 = one["final"]["loss"], two["final"]["loss"]
    assert abs(l2 - l1) <= 0.15 * l1 + 0.05, f"K=2 final loss {l2} vs K=1 {l1}"
    assert abs(two["final"]["eval_top1"] - one["final"]["eval_top1"]) <= 10, (two["final"], one["final"])


def test_resuming_with_two_ranks_is_byte_identical(lowbit, two_rank_run, tmp_path):
    r = two_rank_run
    out = tmp_path / "resumed.onnx"
    proc = mpirun(lowbit, 2, "train", r["model"], *TRAIN, "--resume", r["ck"] / "epoch-0002.ckpt", "-o", out,
                  "--quiet")
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.strip() == "", proc.stdout
    assert out.read_bytes() == r["out"].read_bytes(), "the resumed 2-rank run differs from the uninterrupted one"


def test_a_failing_rank_ends_the_job(lowbit, two_rank_run, tmp_path):
    # Rank 0 cannot read the checkpoint while rank 1 waits for its bytes: the job must end.
    out = tmp_path / "never.onnx"
    proc = mpirun(lowbit, 2, "train", two_rank_run["model"], *TRAIN, "--resume", tmp_path / "none.ckpt", "-o", out,
                  timeout=60)
    assert proc.returncode != 0, describe(proc)
    assert "error: checkpoint" in proc.stderr and "none.ckpt" in proc.stderr, describe(proc)
    assert not out.exists()


def test_qat_under_two_ranks_matches_its_checkpoints_and_runs_in_onnx_runtime(lowbit, two_rank_run, tmp_path):
    """`lowbit qat` under mpirun: every rank starts from rank 0's calibrated quantizers, trains
    data-parallel, rank 0 alone writes; resuming the 2-rank run from its epoch-1 checkpoint gives
    the same file, and ONNX Runtime's top-1 of it is what lowbit reported."""
    r = two_rank_run
    out, js, ck = tmp_path / "qat.onnx", tmp_path / "qat.json", tmp_path / "ck"
    args = ["qat", r["out"], "--train", "fashion-mnist:train:512", "--eval", "fashion-mnist:test:256", "--w-bits", "4",
            "--a-bits", "4", "--batch-size", "64", "--calib-size", "128", "--epochs", "2"]
    proc = mpirun(lowbit, 2, *args, "-o", out, "--json", js, "--checkpoint-dir", ck)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.count("epoch 2/2") == 1 and "2 ranks" in proc.stdout, proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck", "qat.json", "qat.onnx"]
    report = json.loads(js.read_text())
    assert all(np.isfinite(e["loss"]) for e in report["epochs"])
    x, labels = R.load_fashion_mnist("test", limit=256)
    sess = R.ort_session(out)
    top1 = R.ort_top1(sess, x, labels)[0]
    assert abs(top1 - report["evaluation"]["quantized_top1"]) <= 100 / 256 + 1e-9, (top1, report["evaluation"])
    resumed = tmp_path / "resumed.onnx"
    proc = mpirun(lowbit, 2, *args, "--resume", ck / "epoch-0001.ckpt", "-o", resumed, "--quiet")
    assert proc.returncode == 0, describe(proc)
    assert resumed.read_bytes() == out.read_bytes(), "the resumed 2-rank QAT run differs from the uninterrupted one"
