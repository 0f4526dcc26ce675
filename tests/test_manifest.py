"""Stage identity and manifests."""

from __future__ import annotations

from edgekd.manifest import ArtifactKind, Manifest, make_artifact, save_manifest, load_manifest, stage_id, verify_artifacts


def test_stage_id_depends_on_every_input():
    base = stage_id("distill", {"T": 4}, {"teacher": "abc"}, "fp1")
    assert base == stage_id("distill", {"T": 4}, {"teacher": "abc"}, "fp1")
    assert len({base, stage_id("distill", {"T": 2}, {"teacher": "abc"}, "fp1"),
                stage_id("distill", {"T": 4}, {"teacher": "abd"}, "fp1"),
                stage_id("distill", {"T": 4}, {"teacher": "abc"}, "fp2"),
                stage_id("qad", {"T": 4}, {"teacher": "abc"}, "fp1")}) == 5


def test_altered_artifact_is_detected(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"model bytes")
    art = make_artifact(tmp_path, "m", ArtifactKind.onnx, tmp_path / "m.onnx", opset=17)
    m = Manifest(stage="export", id="x", config={}, artifacts=[art])
    save_manifest(m, tmp_path)
    assert load_manifest(tmp_path).artifact("m").facts["opset"] == 17
    assert verify_artifacts(m, tmp_path) == []
    data = bytearray((tmp_path / "m.onnx").read_bytes())
    data[3] ^= 1
    (tmp_path / "m.onnx").write_bytes(bytes(data))
    assert "sha256 does not match" in verify_artifacts(m, tmp_path)[0]


def test_artifact_paths_work_with_a_relative_run_dir(tmp_path, monkeypatch):
    """The default run dir is relative (runs/...): an artifact written there is recorded relative to its stage."""
    monkeypatch.chdir(tmp_path)
    stage = tmp_path / "runs" / "x" / ".work-teacher-abc"
    stage.mkdir(parents=True)
    (stage / "model.pt").write_bytes(b"weights")
    rel_stage = stage.relative_to(tmp_path)
    for given in (rel_stage / "model.pt", stage / "model.pt"):
        art = make_artifact(rel_stage, "model", ArtifactKind.checkpoint, given)
        assert art.path == "model.pt" and art.size_bytes == 7
