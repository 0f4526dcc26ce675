"""The compile stage of a mobile target (edgekd.export.mobile) without the `mobile` extra: the ONNX Runtime
substitute is kept, and the stage's notes, the report and the verdict line say that the profile's runtime
(ExecuTorch) was not measured and which extra to install. The stage id follows the compiled format. The run
with the extra (the .pte measured by bench) is tested in tests/bundle/test_mobile_bundle.py."""

from __future__ import annotations

import json

import pytest

from edgekd.targets import load_target

MOBILE_MODULES = ("executorch", "litert_torch", "ai_edge_litert", "coremltools")


@pytest.fixture
def no_mobile_extra(monkeypatch):
    """This machine as one without the mobile extra, whether or not it is installed here."""
    from edgekd.runtimes import host

    real = host.has_module
    monkeypatch.setattr(host, "has_module", lambda m: False if m.split(".")[0] in MOBILE_MODULES else real(m))


def _compile_env(target_name: str) -> dict:
    from edgekd.stages import compile as compile_stage

    return compile_stage.environment(compile_stage.Config(target=load_target(target_name).model_dump(mode="json")))


def test_stage_id_follows_the_compiled_format(monkeypatch):
    from edgekd.runtimes import host

    real = host.has_module
    monkeypatch.setattr(host, "has_module", lambda m: True if m.split(".")[0] in MOBILE_MODULES else real(m))
    with_extra = _compile_env("android-arm64")
    monkeypatch.setattr(host, "has_module", lambda m: False if m.split(".")[0] in MOBILE_MODULES else real(m))
    without = _compile_env("android-arm64")
    assert with_extra["compiled_format"] == "pte" and without["compiled_format"].startswith("onnx")
    assert "compiled_format" not in _compile_env("intel-cpu")  # other targets' ids do not move


def test_compile_reads_the_pytorch_models_only_when_it_lowers_them(monkeypatch, no_mobile_extra):
    from edgekd.plan import StageSpec, compile_parents

    pt2e = [StageSpec("qad_pt2e", None)]
    target = load_target("android-arm64")
    assert compile_parents(target, pt2e) == {"export": "export"}
    monkeypatch.setattr("edgekd.export.mobile.can_compile", lambda runtime: runtime == "executorch")
    assert compile_parents(target, pt2e) == {"export": "export", "teacher": "finetune", "student": "distill",
                                             "pt2e": "qad_pt2e"}
    assert compile_parents(target, []) == {"export": "export"}
    assert compile_parents(load_target("intel-cpu"), pt2e) == {"export": "export"}


def test_without_the_extra_android_compile_keeps_ort_and_says_executorch_was_not_measured(
        tiny_run, tmp_path, no_mobile_extra):
    from rich.console import Console

    from edgekd.manifest import load_manifest
    from edgekd.model_roles import ROLES
    from edgekd.pipeline import StageContext
    from edgekd.report.summary import markdown, print_report
    from edgekd.stages import compile as compile_stage

    target = load_target("android-arm64")
    [export_dir] = tiny_run.glob("export-*")
    work = tmp_path / "work"
    work.mkdir()
    ctx = StageContext(tiny_run, work, Console(), None, lambda: None, {"export": export_dir})
    m = compile_stage.run(compile_stage.Config(target=target.model_dump(mode="json")),
                          {"export": load_manifest(export_dir)}, ctx)
    assert {m.artifact(r).facts["runtime"] for r in ROLES} == {"onnxruntime"}
    assert {m.artifact(r).facts["measured_on"] for r in ROLES} == {"host substitute"}
    note = m.metrics["runtime_not_measured"]
    assert note in m.notes
    assert note.startswith("executorch XNNPACK (the profile's runtime) was NOT measured")
    assert "pip install 'edgekd[mobile]'" in note and "ONNX Runtime" in note and ".pte" in note

    report = json.loads((tiny_run / "report.json").read_text())
    report["runtime_not_measured"] = note  # what build_report takes from the bench stage's metrics
    console = Console(record=True, width=400)
    print_report(report, console)
    verdict_line = next(line for line in console.export_text().splitlines() if line.startswith("verdict:"))
    assert "on a substitute runtime" in verdict_line and "NOT measured" in verdict_line
    assert "edgekd[mobile]" in verdict_line
    md_verdict = next(line for line in markdown(report).splitlines() if line.startswith("- verdict:"))
    assert "NOT measured" in md_verdict and "edgekd[mobile]" in md_verdict


def test_with_the_runtime_measured_nothing_is_appended(tiny_run):
    from rich.console import Console

    from edgekd.export.mobile import not_measured_note
    from edgekd.report.summary import print_report

    report = json.loads((tiny_run / "report.json").read_text())
    console = Console(record=True, width=400)
    print_report(report, console)
    assert "substitute runtime" not in console.export_text()
    assert not_measured_note("openvino", "CPU") is None
    assert "Apple" in not_measured_note("coreml", "ANE")


def test_edgekd_bench_without_the_extra_names_it(tiny_run, no_mobile_extra):
    from edgekd.benchmark import TimingConfig, run_bench

    quick = TimingConfig(warmup_runs=2, warmup_s=0.0, min_runs=20, min_s=0.0, max_s=2.0)
    report = run_bench(tiny_run, "android-arm64", role="student_int8", timing=quick)
    assert report["row"]["runtime"] == "onnxruntime" and report["measured_on_target"] is False
    [note] = [n for n in report["notes"] if "NOT measured" in n]
    assert note.startswith("executorch XNNPACK (the profile's runtime)") and "pip install 'edgekd[mobile]'" in note


def test_a_model_the_converter_cannot_hold_falls_back_and_says_so(tiny_run, tmp_path, monkeypatch):
    from rich.console import Console

    from edgekd.export import mobile
    from edgekd.manifest import Manifest, load_manifest
    from edgekd.model_roles import ROLES
    from edgekd.pipeline import StageContext
    from edgekd.stages import compile as compile_stage

    def cannot(fmt, parents, parent_dirs, out_dir):
        (out_dir / "teacher_fp32").mkdir()  # a partial attempt, removed before the substitute is written
        raise mobile.LoweringFailed("student_int8: torch.export cannot capture the student: aten.nonzero")

    monkeypatch.setattr(mobile, "can_compile", lambda runtime: True)
    monkeypatch.setattr(mobile, "compile_mobile", cannot)
    [export_dir] = tiny_run.glob("export-*")
    work = tmp_path / "work"
    work.mkdir()
    ctx = StageContext(tiny_run, work, Console(), None, lambda: None, {"export": export_dir})
    parents = {"export": load_manifest(export_dir), "pt2e": Manifest(stage="qad_pt2e", id="x", config={})}
    m = compile_stage.run(compile_stage.Config(target=load_target("android-arm64").model_dump(mode="json")),
                          parents, ctx)
    assert {m.artifact(r).facts["runtime"] for r in ROLES} == {"onnxruntime"}
    note = m.metrics["runtime_not_measured"]
    assert "NOT measured" in note and "aten.nonzero" in note and note in m.notes
