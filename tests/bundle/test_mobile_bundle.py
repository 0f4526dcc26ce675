"""Mobile formats end to end: `compress --target android-arm64` on the embedded digits (tiny epochs) takes the
PT2E route, and its default bundle's INT8 .pte and .tflite are run here and verified; `bench --target
android-arm64` runs the .pte (host measurement + arm64 estimate). Bad input: a missing extra, a student
torch.export cannot capture. The e2e part skips without the mobile extra."""

from __future__ import annotations

import json

import pytest

from edgekd.errors import UsageError
from tests.conftest import TINY
from tests.mobile_helpers import needs_mobile


def test_mobile_format_without_the_extra_names_it(monkeypatch):
    import importlib.util

    from edgekd.bundle import formats

    real = importlib.util.find_spec
    monkeypatch.setattr(formats.importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] in ("litert_torch", "executorch") else real(name, *a))
    with pytest.raises(UsageError) as info:
        formats.parse_formats(["onnx,tflite"])
    assert "pip install 'edgekd[mobile]'" in str(info.value) and "tflite" in str(info.value)
    assert "tflite" not in formats.default_formats() and "executorch" not in formats.default_formats()


def test_mobile_format_without_the_extra_exits_2_on_the_cli(monkeypatch, tmp_path):
    import importlib.util

    from typer.testing import CliRunner

    from edgekd.bundle import formats
    from edgekd.cli.app import _register, app

    real = importlib.util.find_spec
    monkeypatch.setattr(formats.importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] == "litert_torch" else real(name, *a))
    monkeypatch.setattr("edgekd.bundle.build.open_run", lambda *a, **k: None)
    _register()
    result = CliRunner().invoke(app, ["export-bundle", str(tmp_path), "--formats", "tflite", "--out",
                                      str(tmp_path / "b")])
    assert result.exit_code == 2, result.output
    assert "edgekd[mobile]" in result.output and "Traceback" not in result.output


def test_profiles_choose_the_route():
    from edgekd.targets import TargetProfile, load_target

    assert load_target("android-arm64").pt2e_routes == ["pt2e-xnnpack"]
    assert load_target("android-arm64").runtime.name == "executorch"
    assert load_target("android-arm64-ort").pt2e_routes == []
    assert load_target("ios").runtime.name == "coreml"
    data = load_target("android-arm64").model_dump(mode="json")
    with pytest.raises(ValueError, match="twice"):
        TargetProfile.model_validate(dict(data, quantizers=["pt2e-xnnpack", "pt2e-xnnpack"]))
    with pytest.raises(ValueError):
        TargetProfile.model_validate(dict(data, quantizers=["pt2e-tensorrt"]))


@pytest.fixture(scope="module")
def android_run(tmp_path_factory):
    pytest.importorskip("openvino")
    import edgekd

    run_dir = tmp_path_factory.mktemp("android") / "run"
    code = edgekd.compress(**TINY, target="android-arm64", run_dir=run_dir, bundle=True).exit_code
    assert code in (0, 1)  # tiny epochs may miss the accuracy floor; a crash would be 2 or 4
    return run_dir


@pytest.mark.mobile
@needs_mobile
def test_android_run_takes_the_pt2e_route_with_qad(android_run):
    [manifest] = list(android_run.glob("qad_pt2e-*/manifest.json"))
    m = json.loads(manifest.read_text())
    route = m["metrics"]["routes"]["pt2e-xnnpack"]
    assert route["kept"] in ("ptq", "qad") and route["ptq_top1"] > 0.2 and route["qad_top1"] is not None
    assert route["int8_top1"] == max(route["ptq_top1"], route["qad_top1"])  # the val split decides
    assert m["metrics"]["calibration_images"] == TINY["calib_size"]
    assert [a["name"] for a in m["artifacts"]] == ["pt2e-xnnpack"]
    report = json.loads((android_run / "report.json").read_text())
    assert report["quantization_pt2e"]["pt2e-xnnpack"]["kept"] == route["kept"]
    assert "qad pt2e-xnnpack" in (android_run / "report.md").read_text()


@pytest.mark.mobile
@needs_mobile
def test_default_bundle_verifies_int8_pte_and_tflite(android_run):
    bundle = json.loads((android_run / "bundle" / "bundle.json").read_text())
    arts = {a["name"]: a for a in bundle["artifacts"]}
    for name in ("student_int8_pte", "student_int8_tflite"):
        v = arts[name]["verified"]
        assert v["loaded_and_run"] and v["passed"] and v["integer"]["ok"], (name, v)
        assert v["vs_pytorch_pt2e:pt2e-xnnpack"]["ok"]
        assert arts[name]["top1"] is not None and abs(arts[name]["top1"] - arts["student_int8_qdq"]["top1"]) < 0.1
    assert arts["student_int8_tflite"]["facts"]["io"]["input"]["dtype"] == "int8"
    for name in ("student_fp32_mlpackage", "student_int8_mlpackage"):
        v = arts[name]["verified"]
        assert not v["passed"] and v["coreml_spec"]["spec_ok"], v
        assert v["coreml_spec"]["status"] == "converted, not run (needs macOS)"
    assert bundle["verification"]["passed"] and bundle["verification"]["not_built"] == {}
    assert set(bundle["verification"]["not_run_here"]) == {"student_fp32_mlpackage", "student_int8_mlpackage"}


@pytest.mark.mobile
@needs_mobile
def test_compress_bench_judges_the_int8_pte_run_by_executorch_on_the_test_split(android_run):
    """compress's own bench measures the .pte files the profile runs (not the ORT QDQ model): ExecuTorch on this
    CPU, a host measurement with the arm64 estimate beside it; accuracy on the test split; the bundle copies the
    same files."""
    [comp_dir] = list(android_run.glob("compile-*"))
    comp = json.loads((comp_dir / "manifest.json").read_text())
    compiled = {a["name"]: a for a in comp["artifacts"]}
    assert {compiled[r]["kind"] for r in ("teacher_fp32", "student_fp32", "student_int8")} == {"pte"}
    assert compiled["student_int8"]["facts"]["quantized_by"] == "pt2e-xnnpack"
    assert set(comp["parents"]) == {"export", "teacher", "student", "pt2e"}
    report = json.loads((android_run / "report.json").read_text())
    rows = {r["role"]: r for r in report["models"]}
    row = rows["student_int8"]
    assert row["file"].endswith(".pte") and row["format"] == "pte" and row["precision"] == "int8"
    assert row["runtime"].startswith("executorch") and row["runtime_facts"]["runtime"] == "executorch"
    assert row["runtime_facts"]["artifact"].endswith("student_int8/model.pte")
    assert row["measured_on"] == "host" and report["target"]["measured_here"] is False
    assert row["estimated_latency_ms"] > 0 and row["latency"]["median_ms"] > 0
    assert row["size_bytes"] == compiled["student_int8"]["size_bytes"]  # the .pte's size, not the ONNX file's
    [bench_dir] = list(android_run.glob("bench-*"))
    bench = json.loads((bench_dir / "manifest.json").read_text())
    test_images = report["data"]["splits"]["test"]["images"]
    assert row["top1_split"] == "test" and bench["artifacts"][0]["facts"]["images"] == test_images
    route = json.loads(next(android_run.glob("qad_pt2e-*/manifest.json")).read_text())["metrics"]["routes"]
    assert row["val_top1"] == route["pt2e-xnnpack"]["int8_top1"]  # the PT2E model's val figure, not NNCF's
    accuracy = next(b for b in report["budgets"] if b["name"] == "accuracy (top-1)")
    assert accuracy["value"] == row["top1"] and "executorch" in accuracy["basis"]
    latency = next(b for b in report["budgets"] if b["name"].startswith("latency"))
    assert latency["verdict"].startswith("estimated")  # this x86 host is not the phone
    assert report["runtime_not_measured"] is None and report["int8_payoff"]["measured_with"].startswith("executorch")
    bundle = json.loads((android_run / "bundle" / "bundle.json").read_text())
    pte = {a["name"]: a for a in bundle["artifacts"] if a["format"] == "pte"}
    assert pte["student_int8_pte"]["files"][0]["sha256"] == compiled["student_int8"]["sha256"]  # copied, not rebuilt
    assert abs(pte["student_int8_pte"]["top1"] - row["top1"]) <= 1.0 / test_images  # same file, same test split
    assert any(c["basis"] == "measured" for c in pte["student_int8_pte"]["latency"])


@pytest.mark.mobile
@needs_mobile
def test_bench_android_runs_the_pte_here_with_the_arm64_estimate(android_run):
    from edgekd.benchmark import run_bench

    report = run_bench(android_run / "bundle", "android-arm64")
    row = report["row"]
    assert row["runtime"] == "executorch" and row["measured_on"] == "host"  # the same .pte and delegate
    assert row["file"].endswith(".pte") and row["top1"] is not None
    assert row["estimated_latency_ms"] > 0


@pytest.mark.mobile
@needs_mobile
def test_student_torch_export_cannot_capture_marks_those_artifacts(android_run, tmp_path, monkeypatch):
    import torch

    from edgekd.bundle import mobile
    from edgekd.bundle.build import write_bundle

    class DataDependent(torch.nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :10] if x.mean() > 0 else x.flatten(1)[:, 10:20]

    monkeypatch.setattr(mobile, "_student", lambda run: (DataDependent(), torch.zeros(1, 1, 8, 8)))
    monkeypatch.setattr(mobile, "compiled_file", lambda *a: None)  # a run whose compile wrote no .pte
    out = write_bundle(android_run, tmp_path / "b", ["onnx", "executorch"])
    bundle = json.loads((out / "bundle.json").read_text())
    names = [a["name"] for a in bundle["artifacts"]]
    assert "student_int8_qdq" in names and "student_int8_pte" in names and "student_fp32_pte" not in names
    why = bundle["verification"]["not_built"]["student_fp32_pte"]
    assert why.startswith("torch.export cannot capture the student") and "\n" not in why


@pytest.mark.mobile
@needs_mobile
def test_int8_tflite_not_fully_integer_fails_verification_naming_the_ops(android_run, tmp_path):
    """The run given a pt2e-litert program of a residual net (litert-torch 0.10's own quantizer leaves its ADD in
    float): export-bundle lowers the INT8 .tflite from it, verification fails (exit 1) naming the ops."""
    import shutil

    import torch
    from typer.testing import CliRunner

    from edgekd.bundle.run_info import open_run
    from edgekd.cli.app import _register, app
    from edgekd.manifest import ArtifactKind, load_manifest, make_artifact, save_manifest
    from edgekd.quant import pt2e
    from tests.mobile_helpers import tiny_resnet

    run_dir = tmp_path / "run"
    shutil.copytree(android_run, run_dir)
    run = open_run(run_dir)
    pre = run.manifest("distill").preprocessing
    example = torch.zeros(2, pre.channels, *pre.input_size)
    model = tiny_resnet(channels=pre.channels, classes=len(pre.class_names))
    q = pt2e.ptq(model, example, [torch.randn(16, pre.channels, *pre.input_size)], "pt2e-litert")
    stage = run.dirs["qad_pt2e"]
    pt2e.save_program(q, stage / "pt2e-litert.pt2", example)
    m = load_manifest(stage)
    m.artifacts.append(make_artifact(stage, "pt2e-litert", ArtifactKind.quantized_checkpoint, stage / "pt2e-litert.pt2"))
    save_manifest(m, stage)
    _register()
    r = CliRunner().invoke(app, ["export-bundle", str(run_dir), "--formats", "tflite", "--out", str(tmp_path / "b")])
    assert r.exit_code == 1, r.output
    assert "student_int8_tflite (not fully integer: float ops" in r.output.replace("\n", " ")
    assert "ADD x1" in r.output


def test_pt2e_target_without_the_extra_exits_2_before_any_work(monkeypatch, tmp_path):
    import importlib
    import types

    from typer.testing import CliRunner

    from edgekd import errors
    from edgekd.cli.app import _register, app

    def fake_import(name, *a):
        if name.split(".")[0] == "executorch":
            raise ImportError(f"No module named '{name}'", name=name)
        return importlib.import_module(name, *a)

    monkeypatch.setattr(errors, "importlib", types.SimpleNamespace(import_module=fake_import))
    _register()
    r = CliRunner().invoke(app, ["compress", "--target", "android-arm64", "--run-dir", str(tmp_path / "run")])
    assert r.exit_code == 2, r.output
    assert "'executorch' is not installed" in r.output and "edgekd[mobile]" in r.output
    assert not (tmp_path / "run").exists()
