"""`--epochs 0` and chance-level models: an untrained model is refused up front, and a chance-level model
never passes (issue 12)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from edgekd.benchmark import chance_checks, chance_level
from edgekd.cli.app import _register, app
from edgekd.errors import UsageError
from edgekd.plan import validate_options

_register()


@pytest.mark.parametrize("args,flag", [
    (["--epochs", "0"], "--epochs 0"),
    (["--distill-epochs", "0"], "--distill-epochs 0"),
    (["--teacher-epochs", "0"], "--teacher-epochs 0"),
    (["--finetune-epochs", "0"], "--finetune-epochs 0"),
])
def test_zero_training_epochs_are_refused_before_any_work(tmp_path, args, flag):
    result = CliRunner().invoke(app, ["compress", *args, "--run-dir", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and flag in lines[0] and "at least 1 epoch" in lines[0], result.output
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").glob("*-*"))


def test_zero_epochs_allowed_where_they_mean_something():
    validate_options({"qad_epochs": 0})  # PTQ only
    validate_options({"probe_epochs": 0})  # hybrid without the linear probe
    validate_options({"finetune_epochs": 0, "transfer": "none"})  # finetune is skipped anyway
    validate_options({"teacher_epochs": 0, "pretrained": True})  # the teacher is not trained here
    with pytest.raises(UsageError, match="--finetune-epochs 0.*--transfer none"):
        validate_options({"finetune_epochs": 0})


def test_chance_level_is_one_over_k_plus_two_standard_errors():
    assert chance_level(10, 360) == pytest.approx(0.1 + 2 * (0.1 * 0.9 / 360) ** 0.5)
    assert chance_level(2, 100) == pytest.approx(0.6)


def test_chance_level_teacher_fails_even_when_the_student_meets_its_relative_requirement():
    # teacher 10.6% on 10 classes / 360 images (chance 13.2%): a student at 10% is "within 1 point" of it
    checks = chance_checks(0.106, 0.10, num_classes=10, n=360)
    assert [c["verdict"] for c in checks] == ["fail", "fail"]
    assert "teacher did not learn" in checks[0]["message"]
    assert "final model did not learn" in checks[1]["message"]


def test_learned_models_add_no_check():
    assert chance_checks(0.95, 0.93, num_classes=10, n=360) == []
    assert chance_checks(None, 0.5, num_classes=10, n=360) == []


def test_edgekd_bench_fails_a_chance_level_model_even_when_the_floor_is_low(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "cli"))
    from test_bench_cmd import build_run, loose_target

    from edgekd.benchmark import TimingConfig
    from edgekd.benchmark import run_bench

    run = build_run(tmp_path / "run")  # untrained nets, random labels: chance level
    target = loose_target(tmp_path)
    target.write_text(target.read_text() + "accuracy: {floor: 0.01, max_drop_points: null}\n")
    rep = run_bench(run, str(target), "student_int8", timing=TimingConfig(min_runs=5, min_s=0.0, warmup_runs=1))
    chance = [b for b in rep["budgets"] if b["name"] == "final model above chance"]
    assert chance and chance[0]["verdict"] == "fail" and rep["exit_code"] == 1
    assert any("did not learn" in n for n in rep["notes"])
