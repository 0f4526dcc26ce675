"""A student at a smaller input than its teacher (--student-input-size): every stage after qad, the bundle, the
report and `edgekd eval` treat it at its own size, and the teacher at the data's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgekd.cli.app import _register, app
from tests.cli.test_eval_cmd import _one_line_exit_2, _photos

_register()
runner = CliRunner()
DATA, STUDENT = (64, 64), (32, 32)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("openvino")
    import edgekd

    base = tmp_path_factory.mktemp("small")
    _photos(base / "data", n_train=24, n_test=6, sides=(70, 90))
    edgekd.compress(data=str(base / "data"), teacher="cifar_resnet20", transfer="none", student="small_cnn",
                    input_size=list(DATA),
                    student_input_size=list(STUDENT), teacher_epochs=1, finetune_epochs=1, probe_epochs=0,
                    distill_epochs=1, qad_epochs=1, calib_size=40, max_fallback_layers=0, threads=1,
                    run_dir=base / "run", bundle=True)
    return base


def _stage(run: Path, name: str) -> Path:
    return next(run.glob(f"{name}-*"))


def test_each_artifact_takes_its_own_model_size(small_run):
    import onnx
    import openvino as ov

    run = small_run / "run"
    shapes = {}
    for f in _stage(run, "export").glob("*.onnx"):
        dims = onnx.load(f).graph.input[0].type.tensor_type.shape.dim
        shapes[f.stem] = [d.dim_value for d in dims[1:]]
    assert shapes == {"teacher_fp32": [3, *DATA], "student_fp32": [3, *STUDENT], "student_int8_qdq": [3, *STUDENT]}
    export = json.loads((_stage(run, "export") / "manifest.json").read_text())
    recorded = {a["name"]: a["facts"].get("input_shape") for a in export["artifacts"] if a["kind"] != "other"}
    assert recorded["teacher_fp32"] == ["batch", 3, *DATA]
    assert all(v == ["batch", 3, *STUDENT] for k, v in recorded.items() if k.startswith("student"))
    assert export["preprocessing"]["input_size"] == list(STUDENT)
    for xml in _stage(run, "compile").rglob("*.xml"):
        size = [d.get_length() for d in list(ov.Core().read_model(xml).inputs[0].get_partial_shape())[2:]]
        assert size == list(DATA if xml.parent.name == "teacher_fp32" else STUDENT), xml
    with np.load(_stage(run, "bench") / "eval_set.npz") as z:
        assert z["images"].shape[2:] == STUDENT
    report = json.loads((run / "report.json").read_text())
    assert {m["role"]: m["input_size"] for m in report["models"]} == {
        "teacher_fp32": list(DATA), "student_fp32": list(STUDENT), "student_int8": list(STUDENT)}
    assert report["input_sizes"] == {"student": list(STUDENT), "teacher": list(DATA)}
    assert "@ 32x32 (teacher 64x64)" in (run / "report.md").read_text()


def test_the_bundle_is_the_students_and_verifies(small_run):
    from edgekd.bundle.verify import load_bundle

    run = small_run / "run"
    bundle = load_bundle(run / "bundle")
    data_pre = json.loads((_stage(run, "finetune") / "manifest.json").read_text())["preprocessing"]
    assert bundle.verification["passed"], bundle.verification
    assert tuple(bundle.preprocessing.input_size) == STUDENT and bundle.input.shape == ["batch", 3, *STUDENT]
    assert bundle.preprocessing.resize_shorter == round(data_pre["resize_shorter"] * STUDENT[0] / DATA[0])
    assert tuple(bundle.teacher_preprocessing.input_size) == DATA
    teacher = next(a for a in bundle.artifacts if a.role == "teacher_fp32")
    assert teacher.verified["passed"] and teacher.verified["vs_pytorch_fp32"]["ok"]
    assert "64x64" in teacher.verified["other_input_size"]
    with np.load(run / "bundle" / "reference.npz") as z:
        assert z["inputs"].shape[2:] == STUDENT and "expected/teacher_fp32" not in z.files
    assert "the student takes 32x32 images" in (run / "bundle" / "model_card.md").read_text()


def test_eval_reproduces_a_smaller_students_top1_from_raw_files(small_run):
    result = runner.invoke(app, ["eval", str(small_run / "run" / "bundle"), "--images",
                                 str(small_run / "data" / "test"), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["preprocessing"]["input_size"] == list(STUDENT)
    ran = {r["artifact"]: r for r in out["artifacts"] if r["ran"]}
    assert all(r["top1"] == r["recorded_top1"] for r in ran.values())
    report = json.loads((small_run / "run" / "report.json").read_text())
    bench = {(m["role"], m["precision"]): m["top1"] for m in report["models"]}
    assert ran["student_int8_openvino"]["top1"] == bench[("student_int8", "int8")]
    assert ran["teacher_fp32"]["input_size"] == list(DATA)
    assert ran["teacher_fp32"]["top1"] == bench[("teacher_fp32", "fp32")]


def test_bench_of_the_teacher_on_the_students_eval_set_is_refused(small_run):
    result = runner.invoke(app, ["bench", str(small_run / "run" / "bundle"), "--role", "teacher_fp32"])
    _one_line_exit_2(result, "takes [3, 64, 64]", "student's size")
