"""Environment in stage identity: compile and bench ids cover runtime versions and the host; training stages
warn (and are kept) when the training stack differs; `inspect` shows where each stage was made."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import TINY
from tests.mobile_helpers import with_mobile_stages


def _reused(run_dir: Path) -> dict[str, bool]:
    return {s["stage"]: s["reused"] for s in json.loads((run_dir / "report.json").read_text())["stages"]}


def test_copied_run_with_another_openvino_reruns_compile_and_bench_only(tiny_run, tmp_path, monkeypatch) -> None:
    import edgekd.devicebuild.environment as env
    import edgekd

    run_dir = tmp_path / "elsewhere" / "run"  # another folder, as on another machine
    shutil.copytree(tiny_run, run_dir)
    real = env.runtime_version
    monkeypatch.setattr(env, "runtime_version", lambda r: "2099.1.0" if r == "openvino" else real(r))
    edgekd.compress(**TINY, run_dir=run_dir, bundle=False)
    stages = with_mobile_stages(["teacher", "finetune", "distill", "qad", "export", "compile", "bench"])
    assert _reused(run_dir) == {s: s not in ("compile", "bench") for s in stages}
    stages = {s["stage"]: s["dir"] for s in json.loads((run_dir / "report.json").read_text())["stages"]}
    old_compile = {p.parent.name for p in tiny_run.glob("compile-*/manifest.json")}
    assert stages["compile"] not in old_compile  # a new stage id, beside the old folder
    comp = json.loads((run_dir / stages["compile"] / "manifest.json").read_text())
    assert comp["made_on"]["runtimes"]["openvino"] == "2099.1.0"


def test_training_stack_change_warns_and_reuses(tiny_run, tmp_path, monkeypatch, capfd) -> None:
    import edgekd.manifest as manifest
    import edgekd

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    real = manifest.library_versions
    monkeypatch.setattr(manifest, "library_versions", lambda *a: {**real(*a), "torch": "0.0.1"})
    edgekd.compress(**TINY, run_dir=run_dir, bundle=False)
    assert all(_reused(run_dir).values())
    err = capfd.readouterr().err
    assert "teacher-" in err and "was made with torch" in err and "(now 0.0.1)" in err and "reused as it is" in err


def test_inspect_shows_where_each_stage_was_made(tiny_run) -> None:
    from typer.testing import CliRunner

    from edgekd.cli.app import _register, app

    _register()
    res = CliRunner().invoke(app, ["inspect", str(tiny_run), "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["stage"]: r for r in json.loads(res.output)["made_on"]}
    assert rows["compile"]["recorded"] is True and rows["compile"]["runtimes"]["openvino"]
    assert rows["teacher"]["stack"]["torch"] and rows["teacher"]["cpu"]
