"""The default teacher of a user's folder (edgekd.teacher_choice): ImageNet weights from a local torch hub
cache, offline training on all classes (the finetune stage then skipped), the embedded digits unchanged, and
the first line of `compress`'s output saying which. No test asks the network (EDGEKD_OFFLINE, and urlopen
refused)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from edgekd import teacher_choice  # noqa: E402
from edgekd.plan import CompressOptions, validate_options  # noqa: E402
from edgekd.teacher_choice import choose_teacher  # noqa: E402

COLOURS = {"blue": (50, 60, 210), "green": (40, 180, 60), "red": (200, 40, 40)}


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    """An empty torch hub folder and no network: urlopen fails the test if it is called."""
    import urllib.request

    def refuse(*a, **k):
        raise AssertionError("a test asked the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setenv("EDGEKD_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def _photos(root: Path, size: int, n: int = 12) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, col in COLOURS.items():
        (root / c).mkdir(parents=True)
        for i in range(n):
            img = np.clip(rng.normal(col, 50, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / c / f"{i}.png")
    return root


def _fake_resnet18_cache(torch_home: Path) -> Path:
    """resnet18's ImageNet state_dict (random values) under the file name torchvision downloads it as."""
    url = torchvision.models.get_model_weights("resnet18").DEFAULT.url
    path = torch_home / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def _first_stages(opts: CompressOptions, run_dir: Path):
    """teacher and finetune, as `compress` plans them after choosing the teacher."""
    from rich.console import Console

    from edgekd.runner import data_config
    from edgekd.data.dataset import load_data
    from edgekd.pipeline import run_pipeline
    from edgekd.plan import build_specs
    from edgekd.targets import load_target

    target = load_target(opts.target)
    load = functools.lru_cache(maxsize=1)(lambda: load_data(data_config(opts, target), run_dir / ".cache"))
    pre = load().preprocessing
    choice = choose_teacher(opts, load().num_classes, len(load().train), pre.channels, tuple(pre.input_size))
    specs = build_specs(choice.options, target, pre.channels, pre.input_size)[:2]
    return choice, run_pipeline(specs, run_dir, fingerprint=lambda: load().fingerprint, data_loader=load,
                                console=Console(quiet=True), progress=None)


def test_photos_get_the_imagenet_teacher_from_a_local_hub_cache(tmp_path):
    cached = _fake_resnet18_cache(tmp_path / "torch_home")
    opts = validate_options(dict(data=str(_photos(tmp_path / "data", 64)), student="small_cnn", probe_epochs=1,
                                 finetune_epochs=1, batch_size=8, threads=1))
    choice, out = _first_stages(opts, tmp_path / "run")
    assert choice.options.teacher == "resnet18" and choice.options.pretrained is True
    assert choice.line.startswith("teacher: resnet18 with its ImageNet weights (found in ")
    assert str(cached.parent) in choice.line and "3-channel 64x64 images" in choice.line
    teacher, finetune = (o.manifest for o in out)
    assert "pretrained weights" in teacher.metrics["origin"] and teacher.metrics["head_classes"] == 3
    assert finetune.config["transfer"] == "hybrid" and finetune.config["backbone_lr_mult"] == 0.1
    from edgekd.models.checkpoint import load_edgekd_checkpoint

    model, _ = load_edgekd_checkpoint(out[0].stage_dir / "model.pt")
    reference = torch.load(cached)
    assert torch.equal(model.layer3[0].conv1.weight, reference["layer3.0.conv1.weight"])  # the cached weights


def test_offline_photos_train_the_teacher_on_all_classes_and_skip_the_finetune(tmp_path):
    opts = validate_options(dict(data=str(_photos(tmp_path / "data", 64)), student="small_cnn", teacher_epochs=1,
                                 batch_size=8, threads=1))
    choice, out = _first_stages(opts, tmp_path / "run")
    o = choice.options
    assert (o.teacher, o.pretrained, o.source_classes, o.transfer) == ("cifar_resnet20", False, 3, "none")
    assert choice.line.startswith("teacher: offline, no ImageNet weights for resnet18 (resnet18-")
    assert "cifar_resnet20 trained here from scratch on all 3 classes for 1 epochs" in choice.line
    assert "the finetune stage is skipped" in choice.line
    teacher, finetune = (o.manifest for o in out)
    assert teacher.metrics["trained_on_all_classes"] is True and teacher.metrics["head_classes"] == 3
    assert "source_task_top1" not in teacher.metrics and "top1_before_transfer" in teacher.metrics
    assert finetune.notes == ["finetune skipped: the teacher was trained on this data."]


def test_small_images_offline_get_a_schedule_that_suits_the_data_size():
    opts = CompressOptions(data="/some/folder")
    # 60 images in batches of 32: 2 steps an epoch; the default 6 + 10 epochs would be 32 steps
    assert teacher_choice.teacher_epochs(opts, 60) == teacher_choice.MAX_EPOCHS
    assert teacher_choice.teacher_epochs(opts, 2000) == 16  # 63 steps an epoch: 1008 steps
    assert teacher_choice.teacher_epochs(opts, 800) == 20  # 25 steps an epoch: 500 steps
    assert teacher_choice.teacher_epochs(CompressOptions(data="/f", teacher_epochs=3), 60) == 3  # the user's
    choice = choose_teacher(opts, 10, 800, 1, (28, 28))
    assert choice.options.teacher == "cifar_resnet20" and choice.options.teacher_epochs == 20
    assert "no CIFAR-10 weights for cifar_resnet20" in choice.line


def test_a_transfer_option_keeps_the_finetune_and_a_source_task_is_kept_when_asked():
    given = choose_teacher(CompressOptions(data="/f", transfer="full"), 5, 1000, 3, (128, 128))
    assert given.options.transfer == "full" and "then a full fine-tune" in given.line
    src = choose_teacher(CompressOptions(data="/f", source_classes=2), 5, 1000, 3, (128, 128))
    assert src.options.source_classes == 2 and src.options.transfer == "hybrid" and "source task of 2" in src.line
    own = choose_teacher(CompressOptions(data="/f", teacher="resnet34"), 5, 1000, 3, (128, 128))
    assert own.options.teacher == "resnet34" and own.options.source_classes == 5 and not own.options.pretrained


def test_the_embedded_digits_and_a_given_teacher_are_left_as_they_are():
    for opts in (CompressOptions(), CompressOptions(data="/f", pretrained=True, teacher="resnet50"),
                 CompressOptions(data="/f", teacher_weights=__file__)):
        choice = choose_teacher(opts, 10, 1000, 3, (128, 128))
        assert choice.options == opts and choice.line is None


def test_the_first_line_of_compress_says_which_teacher(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import edgekd.plan
    from edgekd.cli.app import _register, app
    from edgekd.errors import UsageError

    def stop(*a, **k):
        raise UsageError("stopped after the teacher choice (test)")

    monkeypatch.setattr(edgekd.plan, "build_specs", stop)
    _register()
    result = CliRunner().invoke(app, ["compress", "--data", str(_photos(tmp_path / "data", 64, n=4)),
                                      "--run-dir", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[0].startswith("teacher: offline, no ImageNet weights for resnet18")
