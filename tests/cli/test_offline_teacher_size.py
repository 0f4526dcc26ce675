"""The offline default teacher of a photo folder (no --teacher, no weights reachable: EDGEKD_OFFLINE=1, set by
tests/conftest.py) trains from scratch at the data's size scaled to a 64 px shorter side; the first output line
says so, and every stage gets the data at that size. --input-size keeps the size given.

Only the run's set-up and, in the first test, the teacher stage run: the stage run is replaced by a stub that
records the data the stages would get (and runs the teacher stage alone when asked), then stops the run
(exit 2); the student's stages are not what is tested here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgekd.cli.app import _register, app
from edgekd.errors import UsageError

pytest.importorskip("torch")
_register()
runner = CliRunner()
STOP = "stopped by the test before the first stage"


def _folder(root: Path, h: int, w: int, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c, col in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                img = np.clip(rng.normal(col, 40, (h, w, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(root / split / c / f"{i}.png")
    return root


@pytest.fixture
def stages(monkeypatch):
    """Replaces the stage run: records the dataset and the specs, then stops the run."""
    import edgekd.runner as runner_mod

    seen: dict = {"run_teacher": False}
    real = runner_mod._run_stages

    def stub(specs, run_dir, dataset, load, progress, as_json):
        seen.update(pre=dataset.preprocessing, loaded=load().preprocessing)
        if seen["run_teacher"]:
            seen["teacher"] = real(specs[:1], run_dir, dataset, load, progress, as_json)[0].manifest
        raise UsageError(STOP)

    import edgekd.data.dataset as dataset_mod

    seen["decoded"] = []
    real_folder = dataset_mod._load_folder

    def counted(cfg, root, cache_dir):
        data = real_folder(cfg, root, cache_dir)
        seen["decoded"].append(tuple(data.preprocessing.input_size))
        return data

    monkeypatch.setenv("EDGEKD_OFFLINE", "1")
    monkeypatch.setattr(runner_mod, "_run_stages", stub)
    monkeypatch.setattr(dataset_mod, "_load_folder", counted)
    return seen


def _compress(data: Path, run: Path, *extra: str):
    result = runner.invoke(app, ["compress", "--data", str(data), "--student", "small_cnn", "--run-dir", str(run),
                                 "--threads", "1", *extra])
    assert result.exit_code == 2 and STOP in result.output, result.output
    return [line for line in result.stdout.splitlines() if line.strip()]


def test_photos_larger_than_64_px_train_the_offline_teacher_at_a_64_px_shorter_side(stages, tmp_path):
    stages["run_teacher"] = True
    lines = _compress(_folder(tmp_path / "data", 96, 128), tmp_path / "run", "--batch-size", "10")
    first = lines[0]
    assert first.startswith("teacher: offline") and "cifar_resnet20 trained here from scratch" in first, first
    assert "; at 64x85 px, the data's 96x128 scaled down" in first, first  # 128 * 64/96 = 85.3
    assert "--input-size HxW" in first
    for pre in (stages["pre"], stages["loaded"]):  # what the teacher stage (and every other) is given
        assert tuple(pre.input_size) == (64, 85)
        assert pre.size_source.startswith("the data's 96x128 scaled to a 64 px shorter side")
    teacher = stages["teacher"]
    assert teacher.stage == "teacher" and tuple(teacher.preprocessing.input_size) == (64, 85)
    # decided before decoding: the images are decoded once, at 64x85, never at the data's own 96x128
    assert stages["decoded"] == [(64, 85)], stages["decoded"]
    (folder,) = (tmp_path / "run").glob("teacher-*")
    assert json.loads((folder / "manifest.json").read_text())["preprocessing"]["input_size"] == [64, 85]


def test_input_size_keeps_its_size(stages, tmp_path):
    lines = _compress(_folder(tmp_path / "data", 96, 128), tmp_path / "run", "--input-size", "96x128")
    assert lines[0].startswith("teacher: offline") and " px, the data's" not in lines[0], lines[0]
    assert tuple(stages["pre"].input_size) == (96, 128) and tuple(stages["loaded"].input_size) == (96, 128)


def test_photos_at_64_px_are_not_rescaled(stages, tmp_path):
    lines = _compress(_folder(tmp_path / "data", 64, 80), tmp_path / "run")
    assert " px, the data's" not in lines[0], lines[0]
    assert tuple(stages["pre"].input_size) == (64, 80)
