"""The size budget is judged on the file the target deploys (edgekd.stages.bench.deployed_size): the OpenVINO IR
(.xml + .bin) for OpenVINO, the compiled file of the target's own runtime, else a stand-in labelled estimated."""

from __future__ import annotations

from edgekd.benchmark import judge
from edgekd.manifest import Artifact, ArtifactKind, Manifest
from edgekd.stages.bench import deployed_size, size_comparison
from edgekd.targets import load_target


def _art(name: str, path: str, size: int, **facts) -> Artifact:
    return Artifact(name=name, kind=ArtifactKind.other, path=path, sha256="0" * 64, size_bytes=size, facts=facts)


EXPORT = Manifest(stage="export", id="e", config={}, artifacts=[
    _art("student_fp32", "student_fp32.onnx", 1_092_558), _art("student_int8_qdq", "student_int8_qdq.onnx", 300_000),
    _art("student_int8_openvino", "student_int8.xml", 162_864), _art("student_int8_openvino_bin", "student_int8.bin",
                                                                       273_940)])


def _size_budget(target: str, row: dict, here: bool) -> dict:
    return next(b for b in judge(load_target(target), row, None, here) if b["name"] == "model size")


def test_openvino_target_is_judged_on_the_ir_it_deploys():
    # compiled by OpenVINO on this host (not the device): measure() sized model.xml + model.bin
    ir = _art("student_int8", "student_int8/model.xml", 162_864, runtime="openvino")
    row = deployed_size(load_target("intel-cpu"), "student_int8", ir, 436_804, EXPORT, here=False)
    assert row == {"size_bytes": 436_804, "size_file": "compile/student_int8/model.xml + .bin", "size_measured": True,
                   "size_of": "the openvino file the target deploys"}
    b = _size_budget("intel-cpu", row, here=False)  # the file's size does not depend on where it was measured
    assert b["verdict"] == "pass" and b["basis"].startswith("measured: compile/student_int8/model.xml + .bin")
    # the same target measured with ONNX Runtime here (OpenVINO not runnable): the export stage's IR, not the ONNX
    sub = _art("student_int8", "student_int8/m.opt.onnx", 280_000, runtime="onnxruntime")
    row = deployed_size(load_target("intel-cpu"), "student_int8", sub, 280_000, EXPORT, here=False)
    assert row["size_bytes"] == 162_864 + 273_940 and row["size_measured"]


def test_tensorrt_without_an_engine_is_estimated_from_the_qdq_onnx():
    sub = _art("student_int8", "student_int8/m.opt.onnx", 280_000, runtime="onnxruntime")
    row = deployed_size(load_target("jetson"), "student_int8", sub, 280_000, EXPORT, here=False)
    assert row["size_bytes"] == 300_000 and row["size_file"] == "export/student_int8_qdq.onnx"
    assert not row["size_measured"] and "tensorrt" in row["size_of"]
    assert _size_budget("jetson", row, here=False)["verdict"] == "estimated pass"


def test_onnxruntime_file_optimised_for_another_cpu_is_an_estimate():
    opt = _art("student_fp32", "student_fp32/m.opt.onnx", 1_100_000, runtime="onnxruntime", hardware_specific=True)
    away = deployed_size(load_target("cpu-ort"), "student_fp32", opt, 1_100_000, EXPORT, here=False)
    here = deployed_size(load_target("cpu-ort"), "student_fp32", opt, 1_100_000, EXPORT, here=True)
    assert (away["size_measured"], here["size_measured"]) == (False, True)
    assert _size_budget("cpu-ort", here, here=True)["verdict"] == "fail"  # 1.1 MB > 1.0 MB, measured


def test_fp32_and_int8_side_by_side():
    rows = [{"role": "student_fp32", "size_bytes": 1_143_808, "size_file": "a", "size_measured": True},
            {"role": "student_int8", "size_bytes": 436_804, "size_file": "b", "size_measured": True}]
    s = size_comparison(rows)
    assert s["fp32_bytes"] == 1_143_808 and s["int8_bytes"] == 436_804 and s["measured"]
    assert round(s["int8_over_fp32"], 3) == 0.382
    from edgekd.report.summary import size_line

    assert size_line(s) == ("size, INT8 vs FP32 student (the files the target deploys): 0.44 MB (b) vs 1.14 MB (a): "
                            "0.38x")
