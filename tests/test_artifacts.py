"""edgekd.artifacts: run directories, bundles and single files resolved into candidates by role, with
sha256 verification before use."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "cli"))
from test_bench_cmd import build_run  # noqa: E402

from edgekd.artifacts import model_input_shape, pick_role, resolve, verify  # noqa: E402
from edgekd.errors import UsageError  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return build_run(tmp_path_factory.mktemp("art") / "run")


def test_run_directory(run: Path) -> None:
    res = resolve(run)
    assert res.kind == "run" and res.run_target == "intel-cpu" and res.input_shape == (3, 16, 16)
    assert res.classes == [f"c{i}" for i in range(10)] and res.eval_set.name == "eval_set.npz"
    ov = res.select("student_int8", "openvino")
    assert ov.origin == "compile" and ov.label == "student_int8/model.xml" and ov.compiled_for == "openvino"
    assert [p.suffix for p in ov.files] == [".xml", ".bin"] and all(ov.expected.values())
    ort = res.select("student_int8", "onnxruntime")  # the run compiled for OpenVINO: the exported QDQ ONNX
    assert ort.origin == "export" and ort.file.name == "student_int8_qdq.onnx" and ort.precision == "int8"
    assert res.onnx_for("student_int8") == ort.file
    assert pick_role(res, None) == "student_int8"
    with pytest.raises(UsageError, match="no artifact for role 'nope'"):
        pick_role(res, "nope")
    verify(ov)


def test_run_without_report_json_uses_stage_manifests(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "report.json").unlink()
    res = resolve(copy)
    assert res.select("student_int8", "openvino").label == "student_int8/model.xml" and res.run_target is None


def test_sha_mismatch_message(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    with open(copy / "compile-bbbbbbbbbbbb" / "student_int8" / "model.xml", "a") as fh:
        fh.write("\n")
    with pytest.raises(UsageError) as err:
        verify(resolve(copy).select("student_int8", "openvino"))
    assert str(err.value) == ("student_int8/model.xml: sha256 does not match its manifest: the file changed after "
                              "the run")


def test_single_files(run: Path) -> None:
    qdq = run / "export-aaaaaaaaaaaa" / "student_int8_qdq.onnx"
    res = resolve(qdq)
    c = res.candidates[0]
    assert res.kind == "file" and c.precision == "int8" and c.runtimes == ("onnxruntime", "openvino")
    assert res.input_shape == (3, 16, 16) == model_input_shape(qdq)
    xml = run / "compile-bbbbbbbbbbbb" / "student_fp32" / "model.xml"
    res = resolve(xml, eval_set=run / "bench-cccccccccccc" / "eval_set.npz")
    assert res.candidates[0].precision == "fp32" and res.candidates[0].runtimes == ("openvino",)
    assert res.input_shape == (3, 16, 16) and res.classes and res.eval_set is not None


def test_bad_inputs(run: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        resolve(tmp_path / "missing.onnx")
    (tmp_path / "w.pt").write_bytes(b"x")
    with pytest.raises(UsageError, match="not a model edgekd can run"):
        resolve(tmp_path / "w.pt")
    with pytest.raises(UsageError, match="one stage folder"):
        resolve(run / "compile-bbbbbbbbbbbb")
    lonely = tmp_path / "lonely.xml"
    shutil.copy(run / "compile-bbbbbbbbbbbb" / "student_fp32" / "model.xml", lonely)
    with pytest.raises(UsageError, match="lonely.bin"):
        resolve(lonely)


def test_bundle(run: Path, tmp_path: Path) -> None:
    from edgekd.manifest import sha256_file

    b = tmp_path / "bundle"
    (b / "models").mkdir(parents=True)
    src = run / "export-aaaaaaaaaaaa" / "student_int8_qdq.onnx"
    shutil.copy(src, b / "models" / "student_int8_qdq.onnx")
    shutil.copy(run / "bench-cccccccccccc" / "eval_set.npz", b / "eval_set.npz")
    pre = json.loads((run / "export-aaaaaaaaaaaa" / "manifest.json").read_text())["preprocessing"]
    f = lambda p: {"path": p, "sha256": sha256_file(b / p), "size_bytes": (b / p).stat().st_size}  # noqa: E731
    (b / "bundle.json").write_text(json.dumps({
        "name": "t", "created_at": "now", "classes": pre["class_names"],
        "input": {"shape": ["batch", 3, 16, 16]}, "preprocessing": pre, "pipeline": {"target": "cpu-ort"},
        "artifacts": [{"name": "student_int8_qdq", "role": "student_int8", "format": "onnx", "precision": "int8",
                       "runtimes": ["onnxruntime", "openvino"], "files": [f("models/student_int8_qdq.onnx")],
                       "top1": 0.1}],
        "eval_set": f("eval_set.npz")}))
    res = resolve(b)
    c = res.select("student_int8", "onnxruntime")
    assert res.kind == "bundle" and res.run_target == "cpu-ort" and c.verify_with == "bundle.json"
    verify(c)
    with open(b / "models" / "student_int8_qdq.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(UsageError, match="models/student_int8_qdq.onnx: sha256 does not match its bundle.json"):
        verify(c)


def test_no_torch_or_runtime_imported() -> None:
    code = ("import sys, edgekd.artifacts, edgekd.cli.bench_cmd, edgekd.cli.gate_cmd, edgekd.benchmark; "
            "print(sorted(m for m in ('torch', 'openvino', 'onnxruntime', 'tensorrt', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
