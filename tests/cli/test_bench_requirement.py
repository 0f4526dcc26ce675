"""The run records its accuracy requirement, and `edgekd bench RUN`, `BUNDLE` and `gate` judge by it: a run made
with `--max-drop 30 --accuracy-floor 0.2` is not judged again against the profile's default (1 point)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekd.cli.app import _register, app
from tests.cli.test_bench_cmd import build_run, loose_target
from tests.cli.test_gate_cmd import FAST
from tests.conftest import TINY

_register()
runner = CliRunner()


def _record(run: Path, accuracy: dict, teacher_top1: float) -> None:
    """Give build_run's bench manifest what compress's bench stage records: the requirement and the teacher."""
    from edgekd.manifest import Manifest

    path = next(run.glob("bench-*")) / "manifest.json"
    m = Manifest.model_validate_json(path.read_text())
    m = m.model_copy(update=dict(config={"accuracy": accuracy},
                                 metrics={"teacher_top1": teacher_top1, "teacher_top1_eval_set": teacher_top1}))
    path.write_text(m.model_dump_json())


def _bench(run: Path, *args: str) -> dict:
    res = runner.invoke(app, ["bench", str(run), "--json", "--repeat", "1", "--min-s", "0.05", *args])
    assert res.exit_code in (0, 1), res.output
    return json.loads(res.output)


def _accuracy_budget(rep: dict) -> dict:
    return next(b for b in rep["budgets"] if b["name"].startswith("accuracy"))


def test_bench_run_judges_by_the_recorded_requirement(tmp_path):
    run = build_run(tmp_path / "run")
    target = str(loose_target(tmp_path))
    _record(run, {"max_drop_points": 30.0, "floor": 0.05}, teacher_top1=0.9)
    rep = _bench(run, "--target", target)
    assert _accuracy_budget(rep)["limit"] == pytest.approx(0.6)  # 0.9 - 30 points, not 0.9 - 1 point
    assert rep["accuracy_requirement"] == {"max_drop_points": 30.0, "floor": 0.05, "from": "the run"}
    _record(run, {"max_drop_points": None, "floor": 0.75}, teacher_top1=0.9)
    assert _accuracy_budget(_bench(run, "--target", target))["limit"] == pytest.approx(0.75)


def test_a_run_that_recorded_nothing_is_judged_by_the_profile(tmp_path):
    run = build_run(tmp_path / "run")
    _record(run, None, teacher_top1=0.9)
    rep = _bench(run, "--target", str(loose_target(tmp_path)))
    assert _accuracy_budget(rep)["limit"] == pytest.approx(0.89)  # the profile's default: 1 point
    assert rep["accuracy_requirement"]["from"] == "profile loose"


def test_gate_checks_the_candidate_against_its_recorded_requirement(tmp_path):
    base, cand = build_run(tmp_path / "a"), build_run(tmp_path / "b")
    _record(cand, {"max_drop_points": 0.0, "floor": 0.99}, teacher_top1=0.9)  # a random net cannot reach 99%
    out = tmp_path / "gate"
    res = runner.invoke(app, ["gate", "--baseline", str(base), "--candidate", str(cand), "--target",
                              str(loose_target(tmp_path)), "--out", str(out), *FAST])
    report = json.loads((out / "gate.json").read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["accuracy requirement"]["status"] == "fail" and checks["accuracy requirement"]["limit"] == 99.0
    assert "floor 99.00%" in checks["accuracy requirement"]["reason"]
    assert res.exit_code == 1, res.output


def test_bench_run_agrees_with_compress_on_every_verdict(tiny_run, tmp_path):
    """A copy of the session's tiny run rerun with non-default accuracy options (qad and later stages rerun):
    `bench RUN` gives the verdict compress gave for every budget, with the same accuracy limit."""
    import edgekd

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    edgekd.compress(**TINY, max_drop=30, accuracy_floor=0.2, run_dir=run, bundle=False)
    report = json.loads((run / "report.json").read_text())
    compress_verdicts = {b["name"]: (b["verdict"], b["limit"]) for b in report["budgets"]}
    rep = _bench(run)
    bench_verdicts = {b["name"]: (b["verdict"], b["limit"]) for b in rep["budgets"]}
    assert bench_verdicts.keys() == compress_verdicts.keys()
    for name, (verdict, limit) in compress_verdicts.items():
        assert bench_verdicts[name][0] == verdict, (name, bench_verdicts[name], verdict)
        assert bench_verdicts[name][1] == pytest.approx(limit), name
    teacher = json.loads(next(run.glob("bench-*/manifest.json")).read_text())["metrics"]["teacher_top1"]
    assert compress_verdicts["accuracy (top-1)"][1] == pytest.approx(max(0.2, teacher - 0.30))
    assert rep["accuracy_requirement"]["from"] == "the run"
