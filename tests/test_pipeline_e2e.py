"""End to end on the embedded digits: every stage runs, reruns skip, one changed knob reruns the tail only."""

from __future__ import annotations

import json
import shutil

from edgekd.manifest import load_manifest, verify_artifacts
from tests.conftest import TINY
from tests.mobile_helpers import with_mobile_stages

STAGES = with_mobile_stages(["teacher", "finetune", "distill", "qad", "export", "compile", "bench"])


def _report(run_dir):
    return json.loads((run_dir / "report.json").read_text())


def test_every_stage_ran_and_wrote_a_true_manifest(tiny_run):
    report = _report(tiny_run)
    assert [s["stage"] for s in report["stages"]] == STAGES
    for s in report["stages"]:
        stage_dir = tiny_run / s["dir"]
        manifest = load_manifest(stage_dir)
        assert manifest.id == s["id"] and manifest.stage == s["stage"]
        assert verify_artifacts(manifest, stage_dir) == []
        assert manifest.preprocessing is not None and manifest.preprocessing.input_size == (8, 8)
    assert not list(tiny_run.glob(".work-*")), "a finished run leaves no work folders"


def test_report_rows_are_measured_on_the_compiled_artifacts(tiny_run):
    report = _report(tiny_run)
    rows = {r["role"]: r for r in report["models"]}
    assert set(rows) == {"teacher_fp32", "student_fp32", "student_int8"}
    for row in rows.values():
        assert 0.0 <= row["top1"] <= 1.0
        assert row["latency"]["n"] >= 300 and row["latency"]["median_ms"] > 0
        assert row["runtime"].startswith("openvino")
    assert rows["student_int8"]["runtime_facts"]["properties"]["INFERENCE_PRECISION_HINT"] in ("f32", "<Type: 'float32'>")
    names = {b["name"] for b in report["budgets"]}
    assert {"latency p90", "model size", "accuracy (top-1)"} <= names
    assert report["exit_code"] == (1 if any(b["verdict"] == "fail" for b in report["budgets"]) else 0)
    payoff = report["int8_payoff"]  # INT8 vs FP32 student, measured interleaved
    lo, hi = payoff["speedup_ci95"]
    assert 0 < lo <= payoff["speedup"] <= hi and "interleaved" in payoff["method"]
    qad = next(s for s in report["stages"] if s["stage"] == "qad")["metrics"]
    assert qad["kept"] in ("qad", "ptq") and 0 <= qad["ptq_top1"] <= 1


def test_int8_payoff_says_why_not_when_not_faster(tiny_run):
    """int8_payoff.paid_off follows the speed-up's CI, and a run where INT8 is not faster names its causes in
    report.json, on the report's INT8 line (report.md) and in report.html."""
    report = _report(tiny_run)
    payoff = report["int8_payoff"]
    assert payoff["paid_off"] == (payoff["speedup_ci95"][0] > 1.0)
    assert bool(payoff["why_not"]) == (not payoff["paid_off"])
    md, page = (tiny_run / "report.md").read_text(), (tiny_run / "report.html").read_text()
    for reason in payoff["why_not"]:
        assert isinstance(reason, str) and reason in md
    if not payoff["paid_off"]:
        assert payoff["empty_call_ms"] > 0 and payoff["graph"]["layers"] >= 2
        assert "INT8 is not faster than FP32 here because" in page


def test_size_is_judged_on_the_deployed_ir_and_the_qdq_file_holds_int8_weights(tiny_run):
    """intel-cpu deploys the OpenVINO IR: the size budget and the report's FP32/INT8 sizes are the IR's .xml + .bin;
    the INT8 QDQ ONNX stores its weights as int8 (smaller than the FP32 ONNX, which it used not to be)."""
    report = _report(tiny_run)
    dirs = {s["stage"]: tiny_run / s["dir"] for s in report["stages"]}
    sizes = {}
    for role in ("student_fp32", "student_int8"):
        xml = next((dirs["compile"] / role).glob("*.xml"))
        sizes[role] = xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
    budget = next(b for b in report["budgets"] if b["name"] == "model size")
    assert budget["value"] == sizes["student_int8"] / 1e6 and "student_int8/model.xml + .bin" in budget["basis"]
    assert budget["basis"].startswith("measured") and budget["verdict"] in ("pass", "fail")
    s = report["sizes"]
    assert (s["fp32_bytes"], s["int8_bytes"]) == (sizes["student_fp32"], sizes["student_int8"]) and s["measured"]
    assert s["int8_over_fp32"] == sizes["student_int8"] / sizes["student_fp32"]
    assert "size, INT8 vs FP32 student" in (tiny_run / "report.md").read_text()
    export = load_manifest(dirs["export"])
    qdq = export.artifact("student_int8_qdq")
    assert qdq.facts["int8_weights"]["folded"] >= 2 and qdq.size_bytes < export.artifact("student_fp32").size_bytes


def test_val_decides_and_test_is_reported(tiny_run):
    """Best epochs, PTQ vs QAD and the fallback are decided on val; the bench stage reports and judges the
    compiled artifacts on test, whose images are exactly the eval set written for bundles and the gate."""
    import numpy as np

    from edgekd.data.dataset import DataConfig, load_data
    from edgekd.preprocess import read_eval_set

    ds = load_data(DataConfig())
    report = _report(tiny_run)
    manifests = {s["stage"]: load_manifest(tiny_run / s["dir"]) for s in report["stages"]}
    val, test = ds.facts("val"), ds.facts("test")
    for stage in ("finetune", "distill", "qad"):
        assert manifests[stage].metrics["decided_on"] == val, stage
    bench = manifests["bench"].metrics
    assert bench["reported_on"] == test and bench["decided_on"] == val
    images, labels, _ = read_eval_set(tiny_run / report["stages"][-1]["dir"] / "eval_set.npz")
    np.testing.assert_array_equal(images, ds.test.images)
    np.testing.assert_array_equal(labels, ds.test.labels)
    rows = {r["role"]: r for r in report["models"]}
    def counts(v: float, n: int) -> bool:  # v is a share of n images
        return abs(v * n - round(v * n)) < 1e-6

    for row in rows.values():  # a top-1 over the 359 test images, the val figure over the 179 val images
        assert row["top1_split"] == "test" and counts(row["top1"], len(ds.test)) and counts(row["val_top1"], len(ds.val))
    assert rows["student_int8"]["val_top1"] == manifests["qad"].metrics["int8_top1"]
    assert bench["teacher_top1"] == rows["teacher_fp32"]["top1"]  # the requirement: teacher test top-1 - drop
    drop = next(b for b in report["budgets"] if b["name"] == "accuracy (top-1)")
    assert abs(drop["limit"] - (rows["teacher_fp32"]["top1"] - 0.01)) < 1e-9
    assert drop["value"] == rows["student_int8"]["top1"]
    data = report["data"]
    assert data["splits"]["test"] == {"images": 359, "origin": "carved 20% of sklearn digits (stratified, seed 0)"}
    assert data["decisions_split"] == "val" and data["reported_split"] == "test"
    md = (tiny_run / "report.md").read_text()
    assert "decisions: val (179 images" in md and "reported: test (359 images" in md
    assert "decisions: val (179 images" in (tiny_run / "report.html").read_text()
    assert "test top-1" in md and "val top-1" in md


def test_rerun_skips_and_changed_temperature_reruns_only_the_tail(tiny_run, tiny_variant, tmp_path):
    import edgekd

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    edgekd.compress(**TINY, run_dir=run_dir, bundle=False)
    assert all(s["reused"] for s in _report(run_dir)["stages"])

    # tiny_variant is a copy of tiny_run rerun with temperature 2 (tests/conftest.py), shared with test_run_repair
    reused = {s["stage"]: s["reused"] for s in _report(tiny_variant)["stages"]}
    # everything after distill reruns, the PT2E stage too when the mobile extra adds one
    assert reused == {s: s in ("teacher", "finetune") for s in STAGES}


def test_a_failed_attempt_leaves_no_manifest_and_the_rerun_starts_clean(tiny_run, tmp_path):
    """A leftover work folder (a compile that died half way) neither counts as finished nor blocks the rerun."""
    import edgekd

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    compile_dir = next(run_dir.glob("compile-*"))
    shutil.rmtree(compile_dir)
    stale = run_dir / f".work-{compile_dir.name}"
    (stale / "student_int8").mkdir(parents=True)
    (stale / "student_int8" / "half-written.xml").write_text("<broken")
    edgekd.compress(**TINY, run_dir=run_dir, bundle=False)
    stages = {s["stage"]: s["reused"] for s in _report(run_dir)["stages"]}
    assert stages["compile"] is False and stages["export"] is True
    assert not (compile_dir / "student_int8" / "half-written.xml").exists()
    assert (compile_dir / "manifest.json").is_file()
    assert not list(run_dir.glob(".work-*"))


def test_a_target_not_on_this_machine_is_measured_on_the_host_and_estimated(tiny_run, tmp_path):
    """jetson (TensorRT on an Orin) here: every stage runs, the QDQ ONNX is measured with ONNX Runtime on
    the host, and device latency is an estimate labelled as such; estimates never fail the exit code."""
    import edgekd

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    code = edgekd.compress(**TINY, target="jetson", run_dir=run_dir, bundle=False).exit_code
    report = _report(run_dir)
    assert report["target"]["measured_here"] is False
    final = next(r for r in report["models"] if r["role"] == "student_int8")
    assert final["runtime"].startswith("onnxruntime") and final["measured_on"] == "host substitute"
    assert final["estimate"]["label"] == "estimated" and final["estimate"]["latency_ms"] > 0
    latency = next(b for b in report["budgets"] if b["name"].startswith("latency"))
    assert latency["basis"].startswith("estimated") and latency["verdict"].startswith("estimated ")
    size = next(b for b in report["budgets"] if b["name"] == "model size")  # no engine here: judged on the QDQ ONNX
    assert size["basis"].startswith("estimated: export/student_int8_qdq.onnx")  # that the engine is built from
    assert size["verdict"].startswith("estimated")
    measured_fail = any(b["verdict"] == "fail" for b in report["budgets"])
    assert code == (1 if measured_fail else 0)
