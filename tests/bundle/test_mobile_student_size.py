"""A student at a smaller input than its teacher on a mobile route: `compress --target android-arm64
--student-input-size 32x32` on 64x64 photos. The qad_pt2e program, the compiled .pte files, the bundle's .pte,
.tflite and .mlpackage all take the student's size (the teacher's .pte the data's); the bundle verifies, its
.pte/.tflite run on the student's images reproduce the recorded outputs and the report's top-1, and `edgekd eval
--pte` reproduces them from the raw files decoded at the student's size. Skips without the mobile extra."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli.test_eval_cmd import _photos
from tests.mobile_helpers import needs_mobile

pytestmark = [pytest.mark.mobile, needs_mobile]
DATA, STUDENT = (64, 64), (32, 32)


@pytest.fixture(scope="module")
def mobile_run(tmp_path_factory) -> Path:
    pytest.importorskip("openvino")
    import edgekd

    base = tmp_path_factory.mktemp("mobile_small")
    _photos(base / "data", n_train=24, n_test=6, sides=(70, 90))
    code = edgekd.compress(data=str(base / "data"), teacher="cifar_resnet20", transfer="none", student="small_cnn",
                           target="android-arm64", input_size=list(DATA), student_input_size=list(STUDENT),
                           teacher_epochs=10, finetune_epochs=1, probe_epochs=0, distill_epochs=12, qad_epochs=1,
                           calib_size=40, max_fallback_layers=0, threads=1, run_dir=base / "run",
                           bundle=True).exit_code
    assert code in (0, 1)  # tiny epochs may miss a budget; a crash would be 2 or 4
    return base


def _stage(run: Path, name: str) -> Path:
    [found] = list(run.glob(f"{name}-*"))
    return found


def _manifest(run: Path, name: str) -> dict:
    return json.loads((_stage(run, name) / "manifest.json").read_text())


def _pt2_input(path: Path) -> list[int]:
    """The (C, H, W) the saved torch.export program's input placeholder holds (its batch is dynamic)."""
    import torch

    ep = torch.export.load(str(path))
    [x] = [n for n in ep.graph.nodes if n.op == "placeholder" and n.name in ep.graph_signature.user_inputs]
    return [int(d) for d in x.meta["val"].shape[1:]]


def _pte_input(path: Path) -> list[int]:
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(path)).metadata("forward")
    return list(method.input_tensor_meta(0).sizes())


def _tflite_input(path: Path) -> list[int]:
    from edgekd.bundle.mobile import tflite_io

    return tflite_io(path)["io"]["input"]["shape"]


def test_qad_pt2e_and_compile_take_the_students_size(mobile_run):
    run = mobile_run / "run"
    pt2e = _manifest(run, "qad_pt2e")
    assert pt2e["preprocessing"]["input_size"] == list(STUDENT)
    assert pt2e["metrics"]["decided_on"] == _manifest(run, "qad")["metrics"]["decided_on"]  # same val images
    route = pt2e["metrics"]["routes"]["pt2e-xnnpack"]
    assert route["ptq_top1"] is not None and route["qad_top1"] is not None  # PTQ and QAD both ran at 32x32
    [program] = [a for a in pt2e["artifacts"] if a["name"] == "pt2e-xnnpack"]
    assert _pt2_input(_stage(run, "qad_pt2e") / program["path"]) == [3, *STUDENT]
    with np.load(_stage(run, "qad") / "calibration.npz") as z:  # what both quantizers calibrated on
        assert z["images"].shape[2:] == STUDENT
    comp = _manifest(run, "compile")
    arts = {a["name"]: a for a in comp["artifacts"]}
    assert {arts[r]["kind"] for r in ("teacher_fp32", "student_fp32", "student_int8")} == {"pte"}
    for role in ("teacher_fp32", "student_fp32", "student_int8"):
        size = DATA if role == "teacher_fp32" else STUDENT
        assert arts[role]["facts"]["static_shape"] == [1, 3, *size], role
        assert _pte_input(_stage(run, "compile") / arts[role]["path"]) == [1, 3, *size], role


def test_report_rows_and_preprocessing_are_the_students(mobile_run):
    run = mobile_run / "run"
    report = json.loads((run / "report.json").read_text())
    rows = {m["role"]: m for m in report["models"]}
    assert {r: m["input_size"] for r, m in rows.items()} == {
        "teacher_fp32": list(DATA), "student_fp32": list(STUDENT), "student_int8": list(STUDENT)}
    assert all(m["file"].endswith(".pte") for m in rows.values())  # the ExecuTorch files were measured
    assert report["input_sizes"] == {"student": list(STUDENT), "teacher": list(DATA)}
    assert "@ 32x32 (teacher 64x64)" in (run / "report.md").read_text()
    bundle = json.loads((run / "bundle" / "bundle.json").read_text())
    assert bundle["preprocessing"]["input_size"] == list(STUDENT) and bundle["input"]["shape"] == ["batch", 3, *STUDENT]
    assert bundle["teacher_preprocessing"]["input_size"] == list(DATA)
    [teacher] = [a for a in bundle["artifacts"] if a["role"] == "teacher_fp32"]  # its ONNX file, at the data's size
    assert teacher["facts"]["input_shape"] == ["batch", 3, *DATA] and teacher["verified"]["passed"]
    assert bundle["preprocessing"] == _manifest(run, "qad_pt2e")["preprocessing"]
    with np.load(run / "bundle" / "eval_set.npz") as z:
        assert z["images"].shape[2:] == STUDENT


def test_every_mobile_file_in_the_bundle_takes_the_students_size_and_verifies(mobile_run):
    from edgekd.bundle.verify import load_bundle

    run = mobile_run / "run"
    bundle = load_bundle(run / "bundle")
    arts = {a.name: a for a in bundle.artifacts}
    assert bundle.verification["passed"], bundle.verification
    assert bundle.verification["not_built"] == {}
    mobile = {n: a for n, a in arts.items() if a.format in ("pte", "tflite", "mlpackage")}
    assert set(mobile) == {f"student_{p}_{f}" for p in ("fp32", "int8") for f in ("pte", "tflite", "mlpackage")}
    for name, art in mobile.items():
        path = run / "bundle" / art.files[0].path
        assert art.facts["static_shape"] == [1, 3, *STUDENT], name
        if art.format == "pte":
            assert _pte_input(path) == [1, 3, *STUDENT], name
        elif art.format == "tflite":
            assert _tflite_input(path) == [1, 3, *STUDENT], name
        else:  # Core ML: checked as a spec here (it runs only on Apple OSes)
            spec = art.verified["coreml_spec"]
            assert spec["spec_ok"] and spec["io"]["inputs"] == [["input", [1, 3, *STUDENT]]], (name, spec)
            continue
        v = art.verified
        assert v["loaded_and_run"] and v["passed"], (name, v)
        ref = "vs_pytorch_fp32" if art.precision == "fp32" else "vs_pytorch_pt2e:pt2e-xnnpack"
        assert v[ref]["ok"], (name, v)
        if art.precision == "int8":
            assert v["integer"]["ok"], (name, v["integer"])


def test_pte_and_tflite_reproduce_the_reference_and_the_reports_top1(mobile_run):
    from edgekd.bundle.verify import check_reference, load_bundle, run_batched, runner
    from edgekd.preprocess import NormalizedImages, read_eval_set

    run = mobile_run / "run"
    bundle = load_bundle(run / "bundle")
    with np.load(run / "bundle" / "reference.npz") as z:
        assert z["inputs"].shape[1:] == (3, *STUDENT)
    checked = check_reference(run / "bundle", bundle)
    for name in ("student_fp32_pte", "student_int8_pte", "student_fp32_tflite", "student_int8_tflite"):
        assert checked[name]["status"] == "ok", (name, checked[name])
    images, labels, pre = read_eval_set(run / "bundle" / "eval_set.npz")
    x = NormalizedImages(images, pre)[:len(labels)]
    report = json.loads((run / "report.json").read_text())
    row = next(m for m in report["models"] if m["role"] == "student_int8")
    assert row["top1"] > 0.5, row  # better than a constant guess (1/3), or the top-1 checks below prove little
    arts = {a.name: a for a in bundle.artifacts}
    one_image = 1.0 / len(labels)  # eval_set.npz holds the whole test split here: the run's bench's images
    for name in ("student_int8_pte", "student_int8_tflite"):
        top1 = float((run_batched(runner(run / "bundle", arts[name]), x).argmax(1) == labels).mean())
        assert top1 == arts[name].top1, name
        # the .pte is the file the run's bench measured; the .tflite another lowering of the same PT2E program
        assert abs(top1 - row["top1"]) <= one_image and abs(top1 - row["top1_eval_set"]) <= one_image, name


def test_eval_with_pte_reproduces_the_mobile_top1_from_raw_files(mobile_run):
    from edgekd.cli.eval_cmd import run_eval

    out = run_eval(mobile_run / "run" / "bundle", mobile_run / "data" / "test", pte=True)
    assert out["preprocessing"]["input_size"] == list(STUDENT)
    ran = {r["artifact"]: r for r in out["artifacts"] if r["ran"]}
    for name in ("student_fp32_pte", "student_int8_pte", "student_fp32_tflite", "student_int8_tflite"):
        assert ran[name]["top1"] == ran[name]["recorded_top1"], (name, ran[name])
    assert ran["teacher_fp32"]["input_size"] == list(DATA)


def test_bench_of_the_bundle_runs_the_students_pte_on_its_eval_set(mobile_run):
    from edgekd.benchmark import TimingConfig, run_bench
    from edgekd.bundle.verify import load_bundle

    bundle_dir = mobile_run / "run" / "bundle"
    quick = TimingConfig(warmup_runs=2, warmup_s=0, min_runs=10, min_s=0)  # accuracy is the point here, not latency
    row = run_bench(bundle_dir, "android-arm64", timing=quick)["row"]
    pte = next(a for a in load_bundle(bundle_dir).artifacts if a.name == "student_int8_pte")
    assert row["runtime"] == "executorch" and row["file"].endswith(".pte")
    assert row["top1"] == pte.top1  # the same .pte on the same 32x32 images as at bundle time
