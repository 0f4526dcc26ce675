"""Bad input to `edgekd compress`: one line saying what is wrong and what to do, exit 2, no traceback,
and no stage folder written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgekd.cli.app import _register, app

_register()
runner = CliRunner()


def _invoke(args: list[str], run_dir: Path):
    result = runner.invoke(app, ["compress", *args, "--run-dir", str(run_dir), "-q"])
    return result


def _assert_one_line(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    out = result.output.strip()
    assert "Traceback" not in out
    lines = [l for l in out.splitlines() if l.strip()]
    assert len(lines) == 1, out
    for n in needles:
        assert n in out, out


def _no_stage_dirs(run_dir: Path) -> None:
    stages = [p for p in run_dir.glob("*-*") if p.is_dir()] if run_dir.exists() else []
    assert stages == []


def _png(path: Path, size=(8, 8)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)


@pytest.mark.parametrize("args,needles", [
    (["--data", "/nonexistent/data"], ("/nonexistent/data", "does not exist")),
    (["--target", "jetsn"], ("unknown target 'jetsn'", "did you mean jetson")),
    (["--teacher", "resnt18"], ("unknown model 'resnt18'", "resnet18")),
    (["--student", "nosuchnet"], ("unknown model 'nosuchnet'",)),
    (["--alpha", "1.5"], ("alpha",)),
    (["--temperature", "0"], ("temperature",)),
    (["--student", "small_cnn", "--attention", "layer3"], ("--attention takes STUDENT_LAYER:TEACHER_LAYER",)),
    (["--attention", "features.0:layer1"], ("--attention names the student's layers", "explicit --student")),
])
def test_bad_options(tmp_path, args, needles):
    result = _invoke(args, tmp_path / "run")
    _assert_one_line(result, *needles)
    _no_stage_dirs(tmp_path / "run")


def test_class_folder_without_images(tmp_path):
    for cls in ("cat", "dog"):
        for i in range(3):
            _png(tmp_path / "data" / cls / f"{i}.png")
    (tmp_path / "data" / "empty").mkdir()
    result = _invoke(["--data", str(tmp_path / "data")], tmp_path / "run")
    _assert_one_line(result, "empty", "has no images")
    _no_stage_dirs(tmp_path / "run")


@pytest.mark.parametrize("args,needles", [
    (["--val-fraction", "1.2"], ("val_fraction", "less than 1")),
    (["--test-fraction", "0"], ("test_fraction", "greater than 0")),
    (["--val-fraction", "0.5", "--test-fraction", "0.5"], ("leave no training images",)),
])
def test_bad_split_fractions(tmp_path, args, needles):
    result = _invoke(args, tmp_path / "run")
    _assert_one_line(result, *needles)
    _no_stage_dirs(tmp_path / "run")


def test_class_with_too_few_images_for_three_roles(tmp_path):
    for i in range(5):
        _png(tmp_path / "data" / "cat" / f"{i}.png")
    _png(tmp_path / "data" / "dog" / "0.png")
    result = _invoke(["--data", str(tmp_path / "data")], tmp_path / "run")
    _assert_one_line(result, "class 'dog' has 1 image(s)", "needs at least 3 images per class")
    _no_stage_dirs(tmp_path / "run")


def test_train_and_test_with_different_classes(tmp_path):
    for split, classes in (("train", ("cat", "dog")), ("test", ("cat", "bird"))):
        for cls in classes:
            for i in range(3):
                _png(tmp_path / "data" / split / cls / f"{i}.png")
    result = _invoke(["--data", str(tmp_path / "data")], tmp_path / "run")
    _assert_one_line(result, "different class folders", "only in train/: dog", "only in test/: bird")
    _no_stage_dirs(tmp_path / "run")


def test_unreadable_image_with_strict_data(tmp_path):
    """Unreadable files are skipped with a warning by default (tests/data/test_folder_data.py); with
    --strict-data they are an error naming them."""
    for cls in ("cat", "dog"):
        for i in range(3):
            _png(tmp_path / "data" / cls / f"{i}.png")
    (tmp_path / "data" / "dog" / "broken.jpg").write_bytes(b"not an image at all")
    result = _invoke(["--data", str(tmp_path / "data"), "--strict-data"], tmp_path / "run")
    _assert_one_line(result, "broken.jpg", "1 of 7 image files are unreadable", "--strict-data")
    _no_stage_dirs(tmp_path / "run")


def test_all_images_unreadable(tmp_path):
    for cls in ("cat", "dog"):
        for i in range(2):
            (tmp_path / "data" / cls).mkdir(parents=True, exist_ok=True)
            (tmp_path / "data" / cls / f"{i}.jpg").write_bytes(b"garbage")
    result = _invoke(["--data", str(tmp_path / "data")], tmp_path / "run")
    _assert_one_line(result, "none of the 4", "image files could be read")
    _no_stage_dirs(tmp_path / "run")


@pytest.mark.parametrize("value", ["0", "abc", "3x"])
def test_bad_input_size(tmp_path, value):
    result = _invoke(["--input-size", value], tmp_path / "run")
    _assert_one_line(result, "input_size", "N or HxW")
    _no_stage_dirs(tmp_path / "run")


def test_target_yaml_with_unknown_field(tmp_path):
    src = Path(__file__).resolve().parents[2] / "targets" / "intel-cpu.yaml"
    bad = tmp_path / "mine.yaml"
    bad.write_text(src.read_text() + "\nturbo: true\n")
    result = _invoke(["--target", str(bad)], tmp_path / "run")
    _assert_one_line(result, "unknown field 'turbo'")


def test_target_yaml_with_invalid_value(tmp_path):
    src = Path(__file__).resolve().parents[2] / "targets" / "intel-cpu.yaml"
    bad = tmp_path / "mine.yaml"
    bad.write_text(src.read_text().replace("precision: int8", "precision: int4"))
    result = _invoke(["--target", str(bad)], tmp_path / "run")
    _assert_one_line(result, "precision")


def test_checkpoint_that_does_not_fit(tmp_path):
    import torch

    from edgekd.models.registry import build_model

    ckpt = tmp_path / "wrong.pt"
    torch.save(build_model("small_cnn", num_classes=10, in_channels=1).state_dict(), ckpt)
    result = _invoke(["--teacher", "cifar_resnet20", "--teacher-weights", str(ckpt)], tmp_path / "run")
    _assert_one_line(result, "does not fit", "cifar_resnet20")
    _no_stage_dirs(tmp_path / "run")


def test_missing_optional_package(tmp_path, monkeypatch):
    import edgekd.runner as compress  # check_extras: the run behind `edgekd compress`

    real = compress.require

    def fake_require(module, extra, why=""):
        if module == "openvino":
            from edgekd.errors import MissingExtra

            raise MissingExtra("openvino", "cpu", why)
        return real(module, extra, why)

    monkeypatch.setattr(compress, "require", fake_require)
    result = _invoke(["--target", "intel-cpu"], tmp_path / "run")
    _assert_one_line(result, "openvino", "pip install 'edgekd[cpu]'")
    _no_stage_dirs(tmp_path / "run")



@pytest.mark.parametrize("args,needles", [
    (["--student", "small_cnn", "--attention", "features.9:layer3"], ("layer 'features.9' not found", "nearest")),
    (["--student", "small_cnn", "--hint", "features.0:layer9"], ("layer 'layer9' not found",)),
])
def test_bad_distillation_layers(tmp_path, args, needles):
    """Layer paths are checked on both models before any stage runs (spatial pairing: tests/losses)."""
    result = _invoke(args, tmp_path / "run")
    _assert_one_line(result, *needles)
    _no_stage_dirs(tmp_path / "run")
