"""export-bundle and inspect: a verified bundle, and any changed byte detected."""

from __future__ import annotations

import json
import platform
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgekd.bundle.reference import read_reference
from edgekd.bundle.verify import all_files, check_reference, load_bundle
from edgekd.cli.app import _register, app

_register()
cli = CliRunner()


def invoke(*args: str):
    return cli.invoke(app, [str(a) for a in args])


def one_line_error(result) -> str:
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_bundle_passes_its_own_verification(tiny_bundle: Path):
    b = load_bundle(tiny_bundle)
    assert b.verification["passed"], b.verification
    names = {a.name for a in b.artifacts}
    assert {"teacher_fp32", "student_fp32", "student_int8_qdq", "student_fp32_ort", "student_int8_ort",
            "student_int8_openvino"} <= names
    coreml = core_ml_off_macos(b)
    assert sorted(b.verification["not_run_here"]) == sorted(coreml)
    for a in b.artifacts:
        if a.name in coreml:  # by design: converted and its spec checked, never counted as run or verified
            assert not a.verified["loaded_and_run"] and not a.verified["passed"], (a.name, a.verified)
            assert a.verified["not_run"] == "Core ML models run only on macOS/iOS" and a.top1 is None
            spec = a.verified["coreml_spec"]
            assert spec["spec_ok"] and spec["ok"] is None and spec["status"] == "converted, not run (needs macOS)"
            continue
        assert a.verified["loaded_and_run"] and a.verified["passed"], (a.name, a.verified)
        assert a.top1 is not None and 0.0 <= a.top1 <= 1.0
    by = {a.name: a for a in b.artifacts}
    qdq = by["student_int8_qdq"].verified["integer"]
    assert qdq["ok"] and qdq["weighted_ops"] == qdq["weighted_ops_int8"] > 0 and not qdq["weights_in_float"]
    ov = by["student_int8_openvino"].verified["integer"]
    assert ov["fake_quantize"] > 0 and any(k.startswith("i8") or k.startswith("u8")
                                            for k in ov["runtime_heavy_layer_precisions"])
    ref = read_reference(tiny_bundle / "reference.npz")
    assert set(ref["expected"]) == names - set(coreml) and ref["raw"].shape[0] == ref["inputs"].shape[0] >= len(b.classes)
    assert sorted(set(ref["labels"].tolist())) == list(range(len(b.classes)))  # one sample of each class at least
    card = (tiny_bundle / "model_card.md").read_text()
    assert card.startswith("# Model card")
    # which split decided and which is reported, with counts; the eval set is the test split
    assert "decisions: val (179 images" in card and "reported: test (359 images" in card
    assert b.pipeline["splits"]["test"]["images"] == b.verification["eval_images"] == 359
    assert b.pipeline["student"] and b.pipeline["transfer"] and b.preprocessing.class_names == b.classes
    archive = tiny_bundle.with_name(tiny_bundle.name + ".tar.gz")
    with tarfile.open(archive) as tar:
        assert f"{tiny_bundle.name}/bundle.json" in tar.getnames()


def core_ml_off_macos(b) -> list[str]:
    """The .mlpackage artifacts (in the default bundle with the mobile extra): Core ML runs only on macOS."""
    return [] if platform.system() == "Darwin" else [a.name for a in b.artifacts if a.format == "mlpackage"]


def test_reference_check_reloads_every_artifact(tiny_bundle: Path):
    b = load_bundle(tiny_bundle)
    results = check_reference(tiny_bundle, b)
    coreml = core_ml_off_macos(b)
    assert results and set(results) == {a.name for a in b.artifacts}
    assert all(r["status"] == "ok" for n, r in results.items() if n not in coreml), results
    for n in coreml:  # not run at bundle time, so no expected outputs: said so, with the reason
        assert results[n] == {"status": "not run when bundled (Core ML models run only on macOS/iOS): "
                                        "no expected outputs in reference.npz"}, results[n]


def test_inspect_ok_prints_card(tiny_bundle: Path):
    r = invoke("inspect", tiny_bundle)
    assert r.exit_code == 0, r.output
    assert "Model card" in r.output and "match bundle.json" in r.output
    r = invoke("inspect", tiny_bundle, "--json")
    assert r.exit_code == 0 and json.loads(r.output)["sha256"] == "ok"
    r = invoke("inspect", tiny_bundle.with_name(tiny_bundle.name + ".tar.gz"))
    assert r.exit_code == 0, r.output


def _every_file(bundle: Path) -> list[str]:
    return ["bundle.json"] + [f.path for f in all_files(load_bundle(bundle))]


def test_inspect_detects_one_flipped_byte_in_any_file(tiny_bundle: Path, tmp_path: Path):
    files = _every_file(tiny_bundle)
    assert {"eval_set.npz", "reference.npz", "model_card.md", "models/student_int8_qdq.onnx"} <= set(files)
    for i, rel in enumerate(files):
        copy = tmp_path / f"b{i}"
        shutil.copytree(tiny_bundle, copy)
        target = copy / rel
        data = bytearray(target.read_bytes())
        pos = len(data) // 2
        data[pos] ^= 0x01
        target.write_bytes(bytes(data))
        r = invoke("inspect", copy)
        assert r.exit_code == 2, (rel, r.output)
        assert rel in one_line_error(r), (rel, r.output)


def test_inspect_missing_file_and_missing_bundle_json(tiny_bundle: Path, tmp_path: Path):
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    (copy / "models" / "student_int8.ort").unlink()
    r = invoke("inspect", copy)
    assert r.exit_code == 2 and "models/student_int8.ort: missing" in one_line_error(r)
    (copy / "bundle.json").unlink()
    r = invoke("inspect", copy)
    assert r.exit_code == 2 and "bundle.json" in one_line_error(r)


def test_inspect_run_dir_verifies_manifests(tiny_run: Path, tmp_path: Path):
    r = invoke("inspect", tiny_run)
    assert r.exit_code == 0, r.output
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    report = json.loads((copy / "report.json").read_text())
    export_dir = copy / next(s["dir"] for s in report["stages"] if s["stage"] == "export")
    onnx = export_dir / "student_fp32.onnx"
    data = bytearray(onnx.read_bytes())
    data[100] ^= 0xFF
    onnx.write_bytes(bytes(data))
    r = invoke("inspect", copy)
    assert r.exit_code == 2 and "student_fp32.onnx" in one_line_error(r)


@pytest.mark.parametrize("fmt,package", [("coreml", "coremltools"), ("executorch", "executorch"),
                                         ("tflite", "litert-torch")])
def test_missing_optional_package_is_one_line_exit_2(tiny_run: Path, tmp_path: Path, fmt: str, package: str):
    from edgekd.bundle.formats import OPTIONAL, _installed

    if _installed(OPTIONAL[fmt][0]):
        pytest.skip(f"{package} is installed here")
    r = invoke("export-bundle", tiny_run, "--formats", f"onnx,{fmt}", "--out", tmp_path / "b")
    assert r.exit_code == 2 and package in one_line_error(r) and "edgekd[mobile]" in one_line_error(r)
    assert not (tmp_path / "b").exists()


def test_bad_formats_and_existing_out(tiny_run: Path, tiny_bundle: Path, tmp_path: Path):
    r = invoke("export-bundle", tiny_run, "--formats", "onnx,savedmodel", "--out", tmp_path / "b")
    assert r.exit_code == 2 and "savedmodel" in one_line_error(r)
    r = invoke("export-bundle", tiny_run, "--formats", "tensorrt", "--out", tmp_path / "b")
    assert r.exit_code == 2 and "TensorRT" in one_line_error(r)
    r = invoke("export-bundle", tiny_run, "--out", tiny_bundle)
    assert r.exit_code == 2 and "--force" in one_line_error(r)
    r = invoke("export-bundle", tmp_path, "--out", tmp_path / "b")
    assert r.exit_code == 2 and "report.json" in one_line_error(r)


def test_cli_writes_a_bundle_with_chosen_formats(tiny_run: Path, tmp_path: Path):
    r = invoke("export-bundle", tiny_run, "--formats", "ort", "--out", tmp_path / "ort-only")
    assert r.exit_code == 0, r.output
    b = load_bundle(tmp_path / "ort-only")
    assert {a.format for a in b.artifacts} == {"ort"} and b.verification["passed"]
    assert np.load(tmp_path / "ort-only" / "eval_set.npz")["images"].shape[0] == b.verification["eval_images"]


def test_tensorrt_plan_is_bundled_with_its_fingerprint(tiny_run: Path, tmp_path: Path):
    """No GPU here: a stand-in plan file registered in the compile manifest is copied, fingerprint checked."""
    from edgekd.bundle.build import write_bundle
    from edgekd.manifest import ArtifactKind, load_manifest, make_artifact, save_manifest, sha256_file

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    report = json.loads((run / "report.json").read_text())
    comp_dir = run / next(s["dir"] for s in report["stages"] if s["stage"] == "compile")
    plan = comp_dir / "student_int8" / "model.plan"
    plan.write_bytes(b"not a real engine")
    (comp_dir / "student_int8" / "model.plan.fingerprint.json").write_text(json.dumps(
        {"gpu_name": "Orin", "compute_capability": "8.7", "tensorrt_version": "10.3", "engine_sha256": sha256_file(plan)}))
    m = load_manifest(comp_dir)
    m.artifacts.append(make_artifact(comp_dir, "student_int8_trt", ArtifactKind.trt_engine, plan, role="student_int8",
                                     precision="int8"))
    save_manifest(m, comp_dir)
    out = write_bundle(run, tmp_path / "trt", ["tensorrt"])
    (art,) = load_bundle(out).artifacts
    assert art.format == "trt_engine" and [f.path for f in art.files] == [
        "models/tensorrt/student_int8.plan", "models/tensorrt/student_int8.plan.fingerprint.json"]
    assert art.verified["fingerprint"]["ok"] and not art.verified["loaded_and_run"]
    assert "GPU" in art.verified["not_run"]


def test_a_file_that_loads_but_does_not_run_fails_its_verification_not_the_bundle(tiny_run: Path, tmp_path: Path,
                                                                                   monkeypatch):
    """A bundled file whose runtime rejects the inputs (say, a .tflite built at another input size) is marked failed
    with the runtime's reason, and the other files are still verified: no traceback out of export-bundle."""
    from edgekd.bundle import build

    real = build.runner

    def runner(root, art):
        if art.name != "student_fp32_ort":
            return real(root, art)

        def infer(x):
            raise ValueError(f"Cannot set tensor: Dimension mismatch. Got {x.shape[2]} but expected 99 for input 0")
        return infer

    monkeypatch.setattr(build, "runner", runner)
    out = build.write_bundle(tiny_run, tmp_path / "b", ["onnx", "ort"])
    b = load_bundle(out)
    arts = {a.name: a for a in b.artifacts}
    assert b.verification["failed"] == ["student_fp32_ort"] and not b.verification["passed"]
    bad = arts["student_fp32_ort"].verified
    assert not bad["loaded_and_run"] and not bad["passed"] and "Dimension mismatch" in bad["error"]
    others = [a for n, a in arts.items() if n != "student_fp32_ort"]
    assert len(others) >= 3 and all(a.verified["passed"] for a in others), sorted(arts)
