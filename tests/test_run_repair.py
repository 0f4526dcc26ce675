"""A damaged run directory is repaired, not fatal, and never consumed; a variant keeps the earlier report;
a report never names a bundle that is not there; a second writer is refused; a read-only run is untouched."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekd.cli.app import _register, app
from edgekd.manifest import Manifest, load_manifest, sha256_file
from tests.conftest import TINY
from tests.test_rundir import _dead_pid, _holder

_register()
ROOT = Path(__file__).resolve().parents[1]


def _stages(run_dir: Path) -> dict[str, dict]:
    return {s["stage"]: s for s in json.loads((run_dir / "report.json").read_text())["stages"]}


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def _one_line_exit2(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_tampered_parent_and_corrupt_manifest_rerun_their_stages(tiny_run, tmp_path, capfd):
    """One flipped byte in distill's model.pt and an unreadable export manifest: both folders are moved aside
    with one warning each, both stages rerun (deterministically: the same files), and the stages after them,
    whose recorded parent hashes still match, are reused."""
    import edgekd

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    before = _stages(run_dir)
    distill = run_dir / before["distill"]["dir"]
    model = distill / load_manifest(distill).artifact("model").path
    good_sha = sha256_file(model)
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    export = run_dir / before["export"]["dir"]
    (export / "manifest.json").write_text('{"stage": "export", truncated')
    capfd.readouterr()
    edgekd.compress(**TINY, run_dir=run_dir, bundle=False)
    err = capfd.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, err
    assert distill.name in warnings[0] and "sha256 does not match" in warnings[0] and "the stage reruns" in warnings[0]
    assert export.name in warnings[1] and "does not load" in warnings[1]
    after = _stages(run_dir)
    assert {s: not v["reused"] for s, v in after.items() if not v["reused"]} == {"distill": True, "export": True}
    assert sha256_file(model) == good_sha  # the rerun reproduced the file the later stages were built from
    assert [s["id"] for s in after.values()] == [s["id"] for s in before.values()]
    assert len(list(run_dir.glob(f"{distill.name}.corrupt-*"))) == 1
    assert len(list(run_dir.glob(f"{export.name}.corrupt-*"))) == 1


def test_child_built_from_changed_parent_files_reruns(tmp_path, capfd):
    """A child whose recorded parent hashes differ from the parent's current files is not reused."""
    from edgekd.pipeline import StageOutcome, StageSpec, _Planned, _reusable, stage_module
    from edgekd.manifest import Artifact, save_manifest

    parent = Manifest(stage="distill", id="p" * 12, config={},
                      artifacts=[Artifact(name="model", kind="checkpoint", path="m.pt", sha256="1" * 64, size_bytes=1)])
    child_dir = tmp_path / ("qad-" + "c" * 12)
    child_dir.mkdir()
    save_manifest(Manifest(stage="qad", id="c" * 12, config={}, parent_artifacts={"student": {"model": "0" * 64}}),
                  child_dir)
    spec = StageSpec("qad", config=None, parents={"student": "distill"})
    item = _Planned(spec, stage_module("qad"), {}, {}, None, "c" * 12, child_dir)
    done = {"distill": StageOutcome(StageSpec("distill", None), parent, tmp_path, skipped=False)}
    assert _reusable(item, done) is False
    assert "built from distill files that have changed since" in capfd.readouterr().err
    done["distill"].manifest.artifacts[0].sha256 = "0" * 64
    assert _reusable(item, done) is True


def test_variant_keeps_earlier_report_and_report_follows_bundle(tiny_run, tiny_variant, tmp_path, monkeypatch,
                                                                capsys):
    """A variant (--temperature 2) in the same run directory moves the earlier report and bundle to history/;
    when bundling is killed (here: fails), no report.json names a bundle that is not there; killed writers'
    temporary bundle folders are removed by the next run. The variant's stage folders are copied in from the
    session's tiny_variant (finished stages are reused), so only reports and bundles are written here."""
    import edgekd.bundle.build as build
    import edgekd

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    for stage in tiny_variant.glob("*-*"):
        if stage.is_dir() and not (run_dir / stage.name).exists():
            shutil.copytree(stage, run_dir / stage.name)
    edgekd.compress(**TINY, run_dir=run_dir, bundle=True)  # the tiny run has no bundle yet
    first = json.loads((run_dir / "report.json").read_text())
    assert Path(first["bundle"]).is_dir() and (run_dir / "bundle.tar.gz").is_file()
    dead = _dead_pid()
    (run_dir / f".bundle.tmp-{dead}" / "models").mkdir(parents=True)
    (run_dir / f".bundle.tar.gz.tmp-{dead}").write_bytes(b"half an archive")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "write_bundle", killed)
    capsys.readouterr()
    with pytest.raises(KeyboardInterrupt):
        edgekd.compress(**TINY, temperature=2.0, run_dir=run_dir, bundle=True)
    out = capsys.readouterr().out
    history = list((run_dir / "history").iterdir())
    assert len(history) == 1 and history[0].name.endswith("-" + first["stages"][-1]["id"])
    assert f"moved to {history[0]}" in out
    assert json.loads((history[0] / "report.json").read_text())["stages"] == first["stages"]
    assert (history[0] / "bundle" / "bundle.json").is_file() and (history[0] / "bundle.tar.gz").is_file()
    assert not (run_dir / "report.json").exists(), "a report was written before its bundle"

    monkeypatch.undo()
    edgekd.compress(**TINY, temperature=2.0, run_dir=run_dir, bundle=True)
    second = json.loads((run_dir / "report.json").read_text())
    assert second["stages"][-1]["id"] != first["stages"][-1]["id"]
    assert Path(second["bundle"]).is_dir() and (run_dir / "bundle.tar.gz").is_file()
    assert len(list((run_dir / "history").iterdir())) == 1
    assert not list(run_dir.glob(".bundle*.tmp-*")), "a dead writer's temporary bundle survived"


def test_second_compress_on_a_locked_run_dir_and_export_bundle_into_it(tmp_path):
    run_dir = tmp_path / "run"
    holder = _holder(run_dir, 60)
    try:
        res = CliRunner().invoke(app, ["compress", "--run-dir", str(run_dir), "-q"])
        _one_line_exit2(res, f"PID {holder.pid}", "--wait")
        res = CliRunner().invoke(app, ["export-bundle", str(run_dir), "--out", str(run_dir / "bundle")])
        _one_line_exit2(res, f"PID {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", ".lock.owner.json"]


def test_compress_wait_and_stale_lock(tiny_run, tmp_path, capfd):
    """--wait queues behind a live writer; the lock of a killed writer is taken over with one warning."""
    import edgekd

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    holder = _holder(run_dir, 2)
    capfd.readouterr()
    edgekd.compress(**TINY, run_dir=run_dir, bundle=False, wait=True)
    assert holder.wait() == 0
    assert f"waiting for PID {holder.pid}" in capfd.readouterr().err
    stale = _holder(run_dir, 60)
    stale.kill()
    stale.wait()
    edgekd.compress(**TINY, run_dir=run_dir, bundle=False)
    warnings = [line for line in capfd.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"stale lock of run directory {run_dir} from PID {stale.pid}" in warnings[0]
    assert not (run_dir / ".lock.owner.json").exists()


def test_run_dir_or_out_that_is_a_file(tmp_path):
    f = tmp_path / "notadir"
    f.write_text("keep me")
    res = CliRunner().invoke(app, ["compress", "--run-dir", str(f), "-q"])
    _one_line_exit2(res, str(f), "is a file")
    res = CliRunner().invoke(app, ["export-bundle", str(tmp_path), "--out", str(f)])
    _one_line_exit2(res, str(f), "is a file")
    assert f.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["notadir"]


def _as_other_user():
    """Run commands as an unprivileged user (root writes anywhere, so a read-only folder needs another user)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make a folder read-only for the command")
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run([*prefix, sys.executable, "-c", "import edgekd"], capture_output=True, text=True,
                           cwd="/", env={**os.environ, "PYTHONPATH": str(ROOT)})
    if probe.returncode != 0:  # e.g. a checkout inside a 0700 folder (mktemp -d): that user cannot read it
        pytest.skip("the unprivileged user cannot import edgekd from this checkout (its folder is private)")
    return prefix


@pytest.mark.parametrize("args", [
    ["compress", "--run-dir", "{run}", "-q"] + [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()
                                                if k not in ("probe_epochs", "max_fallback_layers")],
    ["compress", "--run-dir", "{run}", "-q", "--temperature", "2"],
    ["export-bundle", "{run}", "--out", "{run}/bundle"],
], ids=["reuse", "changed-option", "export-bundle"])
def test_read_only_run_dir_is_refused_and_untouched(tiny_run, tmp_path_factory, args):
    base = Path(os.environ.get("TMPDIR", "/tmp")) / f"edgekd-ro-{os.getpid()}-{args[0]}-{len(args)}"
    shutil.rmtree(base, ignore_errors=True)
    run = base / "run"
    shutil.copytree(tiny_run, run)
    try:
        for p in [base, *base.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)
        before = _tree_hash(run)
        cmd = [*_as_other_user(), sys.executable, "-m", "edgekd", *[a.format(run=run) for a in args]]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=base, timeout=600,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(base)})
        lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1, proc.stdout + proc.stderr
        assert "read-only" in lines[0] and str(run) in lines[0] and "Traceback" not in proc.stderr
        assert _tree_hash(run) == before
    finally:
        for p in [base, *base.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        shutil.rmtree(base, ignore_errors=True)


def test_a_kill_between_folder_and_archive_never_leaves_a_stale_archive(tiny_run, tmp_path, monkeypatch):
    """The archive of the previous bundle is removed before the new folder goes into place; a kill before the new
    archive is renamed leaves the new folder and no archive, never the old archive beside the new folder."""
    import edgekd.bundle.build as build
    from edgekd.bundle.verify import load_bundle

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    old = build.write_bundle(run_dir, run_dir / "bundle")
    old_sha = load_bundle(old).content_sha256
    real_publish = build.publish

    def killed_before_the_archive(tmp, final):
        if str(final).endswith(".tar.gz"):
            raise KeyboardInterrupt
        real_publish(tmp, final)

    monkeypatch.setattr(build, "publish", killed_before_the_archive)
    monkeypatch.setattr(build, "now_iso", lambda: "2000-01-01T00:00:00+00:00")  # a bundle that differs
    with pytest.raises(KeyboardInterrupt):
        build.write_bundle(run_dir, run_dir / "bundle", force=True)
    assert load_bundle(run_dir / "bundle").content_sha256 != old_sha
    assert not (run_dir / "bundle.tar.gz").exists()
    assert not list(run_dir.glob(".bundle*"))
