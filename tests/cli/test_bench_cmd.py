"""`edgekd bench` on run directories and model files, and its refusals (one line, exit 2).

The run directories here are built in tmp_path with the same layout `compress` writes (report.json, stage
folders with manifests, eval_set.npz) from tiny exported conv nets, so the tests take seconds; `build_run`
is shared with test_gate_cmd.py and tests/test_artifacts.py.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgekd.cli.app import _register, app

_register()
runner = CliRunner()
CLASSES = [f"c{i}" for i in range(10)]


def export_net(path: Path, width: int = 8, depth: int = 1, in_ch: int = 3, size: int = 16, classes: int = 10,
               seed: int = 0) -> Path:
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    layers = [torch.nn.Conv2d(in_ch, width, 3, padding=1), torch.nn.ReLU()]
    for _ in range(depth):
        layers += [torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(width, classes)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.randn(1, in_ch, size, size), str(path), dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17)
    return path


def quantize(src: Path, dst: Path, shape: tuple[int, ...]) -> Path:
    quant = pytest.importorskip("onnxruntime.quantization")

    class Reader(quant.CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self._it = iter([{"input": rng.standard_normal((1, *shape), dtype=np.float32)} for _ in range(4)])

        def get_next(self):  # noqa: ANN201
            return next(self._it, None)

    quant.quantize_static(str(src), str(dst), Reader(), quant_format=quant.QuantFormat.QDQ,
                          activation_type=quant.QuantType.QInt8, weight_type=quant.QuantType.QInt8)
    return dst


def build_run(root: Path, width: int = 8, depth: int = 1, in_ch: int = 3, size: int = 16,
              classes: list[str] = CLASSES, runtime: str = "openvino", target: str = "intel-cpu") -> Path:
    """A run directory as `compress` lays it out: export, compile (the runtime's artifacts), bench (eval set)."""
    ov = pytest.importorskip("openvino")
    from edgekd.manifest import ArtifactKind, Manifest, Preprocessing, make_artifact
    from edgekd.preprocess import write_eval_set

    run = root
    pre = Preprocessing(input_size=(size, size), channels=in_ch, mean=[0.5] * in_ch, std=[0.25] * in_ch,
                        class_names=classes)
    exp, comp, bench = run / "export-aaaaaaaaaaaa", run / "compile-bbbbbbbbbbbb", run / "bench-cccccccccccc"
    for d in (exp, comp, bench):
        d.mkdir(parents=True)
    shape = (in_ch, size, size)
    export_net(exp / "teacher_fp32.onnx", width * 2, depth, in_ch, size, len(classes))
    export_net(exp / "student_fp32.onnx", width, depth, in_ch, size, len(classes))
    quantize(exp / "student_fp32.onnx", exp / "student_int8_qdq.onnx", shape)
    arts = [make_artifact(exp, n, ArtifactKind.onnx, exp / f"{n}.onnx") for n in
            ("teacher_fp32", "student_fp32", "student_int8_qdq")]
    (exp / "manifest.json").write_text(Manifest(stage="export", id="aaaaaaaaaaaa", config={}, artifacts=arts,
                                                preprocessing=pre).model_dump_json())
    comp_arts = []
    for role, src, prec in (("teacher_fp32", "teacher_fp32", "fp32"), ("student_fp32", "student_fp32", "fp32"),
                            ("student_int8", "student_int8_qdq", "int8")):
        (comp / role).mkdir()
        facts = dict(role=role, precision=prec, runtime=runtime, measured_on="target", device="CPU")
        if runtime == "openvino":
            path = comp / role / "model.xml"
            ov.save_model(ov.convert_model(str(exp / f"{src}.onnx")), str(path), compress_to_fp16=False)
            comp_arts.append(make_artifact(comp, role, ArtifactKind.openvino_ir, path, **facts))
            comp_arts.append(make_artifact(comp, f"{role}:model.bin", ArtifactKind.other, path.with_suffix(".bin")))
        else:
            path = comp / role / f"{src}.opt.onnx"
            shutil.copy(exp / f"{src}.onnx", path)
            comp_arts.append(make_artifact(comp, role, ArtifactKind.onnx, path, **facts))
    (comp / "manifest.json").write_text(Manifest(stage="compile", id="bbbbbbbbbbbb", config={}, artifacts=comp_arts,
                                                 preprocessing=pre, metrics={"runtime": runtime}).model_dump_json())
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(64, *shape), dtype=np.uint8)
    write_eval_set(bench / "eval_set.npz", images, rng.integers(0, len(classes), 64), pre)
    art = make_artifact(bench, "eval_set", ArtifactKind.other, bench / "eval_set.npz")
    (bench / "manifest.json").write_text(Manifest(stage="bench", id="cccccccccccc", config={}, artifacts=[art],
                                                  preprocessing=pre, metrics={}).model_dump_json())
    stages = [{"stage": d.name.split("-")[0], "dir": d.name} for d in (exp, comp, bench)]
    (run / "report.json").write_text(json.dumps({"target": {"name": target}, "stages": stages}))
    return run


def loose_target(tmp: Path, name: str = "loose", runtime: str = "openvino", device: str = "CPU",
                 arch: str = "x86_64", latency_ms: float = 1000.0) -> Path:
    """A profile with budgets no tiny test model fails on a loaded machine (tests judge the logic, not speed)."""
    path = tmp / f"{name}.yaml"
    path.write_text(f"""name: {name}
description: test profile
device: {{name: test cpu, kind: cpu, arch: {arch}, peak_int8_tops: 1.0, peak_fp32_tflops: 0.1, memory_bandwidth_gbs: 10}}
runtime: {{name: {runtime}, device: {device}, threads: 1}}
precision: int8
precisions_allowed: [int8, fp32]
budgets: {{model_class: tiny test net, latency_ms: {latency_ms}, model_size_mb: 10, peak_memory_mb: 4096}}
""")
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return build_run(tmp_path_factory.mktemp("bench") / "run")


def one_line_exit2(result, *needles: str) -> None:
    """Bad input: exit 2 with one line that names each needle, never a traceback."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for n in needles:
        assert n in result.output, result.output


def test_bench_run_dir_json(run_dir: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["bench", str(run_dir), "--target", str(loose_target(tmp_path)), "--json",
                              "--repeat", "2", "--min-s", "0.05"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    row = rep["row"]
    assert row["file"] == "student_int8/model.xml" and row["runtime"] == "openvino" and row["precision"] == "int8"
    assert rep["measured_on_target"] is True and 0.0 <= row["top1"] <= 1.0
    assert rep["repeats"]["n"] == 2 and len(rep["repeats"]["p50_ms"]) == 2
    assert rep["repeats"]["spread"]["min"] <= rep["repeats"]["spread"]["max"]
    assert {b["name"] for b in rep["budgets"]} >= {"latency p90", "model size", "memory"}
    assert all(b["verdict"] == "pass" for b in rep["budgets"])


def test_bench_single_onnx_file_without_eval_set(run_dir: Path, tmp_path: Path) -> None:
    onnx = run_dir / "export-aaaaaaaaaaaa" / "student_fp32.onnx"
    res = runner.invoke(app, ["bench", str(onnx), "--target", str(loose_target(tmp_path, runtime="onnxruntime")),
                              "--json", "--min-s", "0.05"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert rep["row"]["top1"] is None and rep["row"]["precision"] == "fp32"
    assert any("no eval set" in n for n in rep["notes"])


def test_bench_single_file_with_eval_set_measures_accuracy(run_dir: Path, tmp_path: Path) -> None:
    onnx = run_dir / "export-aaaaaaaaaaaa" / "student_int8_qdq.onnx"
    ev = run_dir / "bench-cccccccccccc" / "eval_set.npz"
    res = runner.invoke(app, ["bench", str(onnx), "--eval-set", str(ev), "--json", "--min-s", "0.05",
                              "--target", str(loose_target(tmp_path, runtime="onnxruntime"))])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["row"]["top1"] is not None


def test_bench_estimates_for_a_device_not_here(run_dir: Path) -> None:
    res = runner.invoke(app, ["bench", str(run_dir), "--target", "jetson", "--json", "--min-s", "0.05"])
    assert res.exit_code == 0, res.output  # estimated verdicts never change the exit code without --strict
    rep = json.loads(res.output)
    assert rep["measured_on_target"] is False and rep["row"]["measured_on"] == "host substitute"
    assert rep["row"]["estimated_latency_ms"] > 0
    lat = next(b for b in rep["budgets"] if b["name"].startswith("latency"))
    assert lat["verdict"].startswith("estimated")


def test_sha256_mismatch_is_refused(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    xml = copy / "compile-bbbbbbbbbbbb" / "student_int8" / "model.xml"
    xml.write_text(xml.read_text().replace("</net>", "<!-- edited --></net>"))
    res = runner.invoke(app, ["bench", str(copy), "--target", str(loose_target(tmp_path))])
    one_line_exit2(res, "student_int8/model.xml: sha256 does not match its manifest: the file changed after the run")


def test_target_runtime_missing_names_the_extra(run_dir: Path, tmp_path: Path, monkeypatch, as_host) -> None:
    """On intel-cpu's own device a missing OpenVINO is exit 2 (elsewhere ONNX Runtime measures as a host
    substitute), so the host is set to a Xeon: the test must not depend on which CPU runs it."""
    import edgekd.runtimes.host as host

    as_host("intel-xeon")
    real = host.has_module
    monkeypatch.setattr(host, "has_module", lambda m: False if m == "openvino" else real(m))
    res = runner.invoke(app, ["bench", str(run_dir), "--target", "intel-cpu"])
    one_line_exit2(res, "openvino", "pip install 'edgekd[cpu]'")


def test_gpu_target_without_tensorrt_names_the_gpu_extra(run_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import edgekd.runtimes.host as host

    monkeypatch.setattr(host, "nvidia_gpu_here", lambda: True)
    prof = tmp_path / "trt.yaml"
    prof.write_text(loose_target(tmp_path).read_text().replace("name: openvino, device: CPU, threads: 1",
                                                               "name: tensorrt, device: GPU"))
    res = runner.invoke(app, ["bench", str(run_dir), "--target", str(prof)])
    one_line_exit2(res, "tensorrt", "pip install 'edgekd[gpu]'")


def test_precision_the_target_cannot_run(run_dir: Path, tmp_path: Path) -> None:
    prof = tmp_path / "int8only.yaml"
    prof.write_text(loose_target(tmp_path).read_text().replace("[int8, fp32]", "[int8]"))
    res = runner.invoke(app, ["bench", str(run_dir), "--target", str(prof), "--role", "student_fp32"])
    one_line_exit2(res, "runs int8 only", "fp32")


def test_profile_with_impossible_precision_is_refused(run_dir: Path, tmp_path: Path) -> None:
    prof = tmp_path / "fp16cpu.yaml"
    prof.write_text(loose_target(tmp_path, runtime="onnxruntime").read_text()
                    .replace("precision: int8", "precision: fp16").replace("[int8, fp32]", "[fp16]"))
    res = runner.invoke(app, ["bench", str(run_dir), "--target", str(prof)])
    one_line_exit2(res, "cannot run fp16")


def test_tensorrt_engine_from_another_machine_is_refused(tmp_path: Path) -> None:
    from edgekd.manifest import sha256_file

    engine = tmp_path / "model.plan"
    engine.write_bytes(b"not really an engine")
    (tmp_path / "model.plan.fingerprint.json").write_text(json.dumps({
        "engine_sha256": sha256_file(engine),
        "environment": {"gpu_name": "Orin", "compute_capability": "8.7", "tensorrt_version": "10.3.0"}}))
    from edgekd.runtimes.tensorrt import fingerprint_path

    assert fingerprint_path(engine).name == "model.plan.fingerprint.json"
    res = runner.invoke(app, ["bench", str(engine), "--target", "jetson"])
    one_line_exit2(res, "engine built for Orin")


def test_not_an_artifact(tmp_path: Path) -> None:
    one_line_exit2(runner.invoke(app, ["bench", str(tmp_path), "--target", "intel-cpu"]), "not a run directory")
    one_line_exit2(runner.invoke(app, ["bench", str(tmp_path / "nope"), "--target", "intel-cpu"]), "does not exist")
