"""`edgekd compile`: builds on this machine, records the environment, is reused only when it matches; bench uses
what it built; refusals are one line, exit 2."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from test_bench_cmd import build_run, loose_target, one_line_exit2  # noqa: E402

from edgekd.cli.app import _register, app  # noqa: E402
from edgekd.errors import UsageError  # noqa: E402

_register()
runner = CliRunner()


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    return build_run(tmp_path_factory.mktemp("compile") / "run")


@pytest.fixture()
def run(base_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(base_run, copy)
    return copy


@pytest.fixture(scope="module")
def ov_target(tmp_path_factory) -> str:
    return str(loose_target(tmp_path_factory.mktemp("t"), "loose-ov"))


def _compile(path: Path, target: str, *extra: str):
    return runner.invoke(app, ["compile", str(path), "--target", target, "--json", *extra])


def test_openvino_build_reuse_and_bench_uses_it(run, ov_target, monkeypatch) -> None:
    res = _compile(run, ov_target)
    assert res.exit_code == 0, res.output
    rec = json.loads(res.output)
    assert not rec["reused"] and {a["role"] for a in rec["artifacts"]} == {"teacher_fp32", "student_fp32",
                                                                            "student_int8"}
    assert rec["environment"]["openvino_version"] and rec["environment"]["device"] == "CPU"
    int8 = next(a for a in rec["artifacts"] if a["role"] == "student_int8")
    assert [f["path"].rsplit(".", 1)[-1] for f in int8["files"]] == ["xml", "bin", "blob"]
    again = json.loads(_compile(run, ov_target).output)
    assert again["reused"] and again["created_at"] == rec["created_at"]

    bench = runner.invoke(app, ["bench", str(run), "--target", ov_target, "--json", "--min-s", "0.05"])
    assert bench.exit_code == 0, bench.output
    data = json.loads(bench.output)
    assert data["row"]["file"].startswith("compiled/loose-ov/student_int8/")
    assert any("edgekd compile` built on this machine" in n for n in data["notes"])
    own = data["row"]["runtime_latency"]  # the runtime's own timing of the same calls, and what Python adds
    assert 0 < own["median_ms"] <= data["row"]["latency"]["median_ms"] + 1e-9 and "InferRequest.latency" in own["source"]

    # another OpenVINO release: bench refuses the stale build and names the command; compile rebuilds it
    import edgekd.devicebuild.environment as env

    real = env.runtime_version
    monkeypatch.setattr(env, "runtime_version", lambda r: "2099.0" if r == "openvino" else real(r))
    stale = runner.invoke(app, ["bench", str(run), "--target", ov_target, "--min-s", "0.05"])
    one_line_exit2(stale, "openvino_version", "2099.0", f"edgekd compile {run} --target loose-ov")
    rebuilt = json.loads(_compile(run, ov_target).output)
    assert not rebuilt["reused"] and any("openvino_version" in n for n in rebuilt["notes"])


def test_changed_build_file_is_refused(run, ov_target) -> None:
    assert _compile(run, ov_target).exit_code == 0
    xml = next((run / "compiled" / "loose-ov" / "student_int8").glob("*.xml"))
    xml.write_text(xml.read_text() + " ")
    res = runner.invoke(app, ["bench", str(run), "--target", ov_target])
    one_line_exit2(res, f"{xml.name} changed after it was built", "edgekd compile")


def test_onnxruntime_build(run, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    target = str(loose_target(tmp_path, "loose-ort", runtime="onnxruntime"))
    rec = json.loads(_compile(run, target).output)
    assert {a["format"] for a in rec["artifacts"]} == {"onnx"}
    assert rec["environment"]["onnxruntime_version"] and rec["environment"]["cpu_flags_sha256"]


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_compile_without_the_runtime_names_the_extra(run) -> None:
    one_line_exit2(_compile(run, "jetson"), "tensorrt", "pip install 'edgekd[gpu]'")


def test_int8_tensorrt_profile_needs_the_qdq_onnx(run) -> None:
    for m in run.glob("export-*/manifest.json"):
        data = json.loads(m.read_text())
        data["artifacts"] = [a for a in data["artifacts"] if a["name"] != "student_int8_qdq"]
        m.write_text(json.dumps(data))
    one_line_exit2(_compile(run, "jetson"), "no QDQ ONNX of the INT8 student", "TensorRT")


def _trt_record(folder: Path, env: dict) -> None:
    from edgekd.devicebuild.record import BuiltArtifact, BuiltFile, CompiledRecord, write_record
    from edgekd.manifest import sha256_file

    (folder / "student_int8").mkdir(parents=True)
    engine = folder / "student_int8" / "model.plan"
    engine.write_bytes(b"not a TensorRT plan")
    write_record(CompiledRecord(target="jetson", runtime="tensorrt", device="GPU", environment=env, host="x",
                                created_at="t", artifacts=[BuiltArtifact(
                                    role="student_int8", precision="int8", format="trt_engine",
                                    files=[BuiltFile(path="student_int8/model.plan", sha256=sha256_file(engine),
                                                     size_bytes=engine.stat().st_size)],
                                    source="models/student_int8_qdq.onnx", source_sha256="0" * 64)]), folder)


def _resolved(run: Path):
    from edgekd.artifacts import resolve
    from edgekd.targets import load_target

    return resolve(run), load_target("jetson"), SimpleNamespace(on_target=True)


def test_engine_for_another_gpu_is_refused_before_loading(run) -> None:
    from edgekd.devicebuild.record import use_compiled

    res, target, plan = _resolved(run)
    _trt_record(run / "compiled" / "jetson", {"gpu_name": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0",
                                              "tensorrt_version": "10.3.0"})
    with pytest.raises(UsageError, match=r"engine built for A100-SXM4-80GB \(sm_80.*edgekd compile"):
        use_compiled(res, target, plan)


def test_no_engine_on_the_device_names_the_command(run) -> None:
    from edgekd.devicebuild.record import use_compiled

    res, target, plan = _resolved(run)
    with pytest.raises(UsageError, match=f"no TensorRT engine built on this device: run `edgekd compile {run} "
                                         "--target jetson` here first"):
        use_compiled(res, target, plan)
    assert use_compiled(res, target, SimpleNamespace(on_target=False))[0] is res  # host substitute: ONNX as is


def test_engine_that_is_not_a_plan_is_never_deserialised(run, monkeypatch) -> None:
    """An engine file replaced after the build: refused by sha256 before TensorRT could read it."""
    import edgekd.devicebuild.environment as env
    from edgekd.devicebuild.record import use_compiled

    here = {"gpu_name": "Orin", "compute_capability": "8.7", "tensorrt_version": "10.3.0"}
    monkeypatch.setattr(env, "current_environment", lambda runtime, device: here)
    res, target, plan = _resolved(run)
    folder = run / "compiled" / "jetson"
    _trt_record(folder, here)
    assert use_compiled(res, target, plan)[0].candidates[0].format == "trt_engine"
    (folder / "student_int8" / "model.plan").write_bytes(b"\x7fELF something else")
    with pytest.raises(UsageError, match="model.plan changed after it was built"):
        use_compiled(res, target, plan)


def test_compile_imports_no_torch(run, ov_target) -> None:
    """A device has the base package and its runtime only: compile must not need torch."""
    import subprocess

    code = ("import sys\nfrom typer.testing import CliRunner\nfrom edgekd.cli.app import _register, app\n_register()\n"
            f"r = CliRunner().invoke(app, ['compile', {str(run)!r}, '--target', {ov_target!r}, '--json'])\n"
            "print(r.exit_code, sorted(m for m in ('torch', 'torchvision', 'nncf') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "0 []"
