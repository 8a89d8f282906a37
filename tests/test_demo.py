"""`lowbit demo`: a demo model without a trained copy is trained from its architecture and
cached, then quantized by the PTQ pipeline and by QAT; the JSON holds both tables.

Kept small for 2 cores: only fm_inception's architecture, 256 training images, --quick.
"""
from __future__ import annotations

import json
import shutil

import onnx

import ort_reference as R
from ort_reference import describe_proc as describe


def test_demo_trains_a_missing_model_then_prints_the_ptq_and_qat_tables(lowbit, tmp_path):
    arch, models, out, js = tmp_path / "arch", tmp_path / "models", tmp_path / "out", tmp_path / "demo.json"
    arch.mkdir()
    shutil.copy(R.REPO_ROOT / "assets" / "architectures" / "fm_inception.onnx", arch)
    proc = lowbit.ok("demo", "--models", models, "--architectures", arch, "--output", out, "--quick",
                     "--train-samples", "256", "--qat-samples", "128", "--json", js, timeout=900)
    assert "training it from scratch" in proc.stdout, describe(proc)
    trained = models / "fm_inception.onnx"
    assert trained.is_file(), "the trained model was not cached"
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(trained)).graph.initializer}
    assert any(abs(v).max() > 0 for v in inits.values() if v.dtype.kind == "f"), "parameters are still zero"
    report = json.loads(js.read_text())
    [ptq] = report["ptq"]
    assert ptq["model"] == "fm_inception" and set(ptq["quantized"]) == {"PT W8A8", "PT W4A8", "PC W8A8", "PC W4A8"}
    [qat] = report["qat"]
    assert set(qat["start"]) == set(qat["qat"]) == {"PT W4A4", "PC W4A4"}, qat
    assert all(0 <= v <= 100 for v in list(qat["start"].values()) + list(qat["qat"].values()))
    assert "PT W4A4 QAT" in proc.stdout and "PC W4A8" in proc.stdout, proc.stdout
    written = sorted(p.name for p in out.iterdir())
    assert "fm_inception_qat_pt_w4a4.onnx" in written and "fm_inception_pc_w4a8.onnx" in written, written
    R.ort_session(out / "fm_inception_qat_pc_w4a4.onnx")  # the QAT file loads in ONNX Runtime
