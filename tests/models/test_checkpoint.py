"""read_state_dict / load_weights / edgekd checkpoints: layouts, prefixes, errors that name keys, weights_only."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from edgekd.errors import UsageError
from edgekd.models import (
    FORMAT,
    build_model,
    load_edgekd_checkpoint,
    load_weights,
    read_state_dict,
    save_edgekd_checkpoint,
)


class Payload:
    """An arbitrary class: unpickling it would run code from the file."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pwned",))


def test_edgekd_checkpoint_round_trip(tmp_path: Path) -> None:
    model = build_model("small_cnn", num_classes=10, in_channels=1).eval()
    x = torch.randn(4, 1, 8, 8)
    path = save_edgekd_checkpoint(
        tmp_path / "sub" / "student.pt",
        model,
        "small_cnn",
        {"num_classes": 10, "in_channels": 1, "input_size": 8},
        extra={"metrics": {"top1": 0.97}, "class_names": [str(i) for i in range(10)], "epoch": 3},
    )
    raw = torch.load(path, map_location="cpu", weights_only=True)  # only plain types and tensors
    assert raw["format"] == FORMAT == "edgekd-checkpoint/1" and raw["arch"] == "small_cnn"
    assert not list(path.parent.glob("*.tmp"))

    loaded, meta = load_edgekd_checkpoint(path)
    assert meta["arch_kwargs"] == {"num_classes": 10, "in_channels": 1, "input_size": 8}
    assert meta["metrics"] == {"top1": 0.97} and meta["epoch"] == 3 and "state_dict" not in meta
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), model(x))


def test_same_weights_give_the_same_bytes(tmp_path: Path) -> None:
    """A rerun stage (after a kill, or a repair) must reproduce its checkpoint bit for bit: the bytes may not
    depend on the (random) temporary file name the checkpoint is written under."""
    model = build_model("small_cnn", num_classes=3, in_channels=1)
    args = ("small_cnn", {"num_classes": 3, "in_channels": 1})
    a = save_edgekd_checkpoint(tmp_path / "a" / "model.pt", model, *args)
    b = save_edgekd_checkpoint(tmp_path / "b" / "model.pt", model, *args)
    assert a.read_bytes() == b.read_bytes()
    assert [p.name for p in a.parent.iterdir()] == ["model.pt"]


def test_save_refuses_objects_weights_only_cannot_read(tmp_path: Path) -> None:
    model = build_model("small_cnn", num_classes=2)
    with pytest.raises(TypeError, match="extra.when"):
        save_edgekd_checkpoint(tmp_path / "a.pt", model, "small_cnn", {"num_classes": 2, "in_channels": 3},
                               extra={"when": object()})
    with pytest.raises(ValueError, match="reserved"):
        save_edgekd_checkpoint(tmp_path / "a.pt", model, "small_cnn", {"num_classes": 2, "in_channels": 3},
                               extra={"arch": "x"})


@pytest.mark.parametrize(
    ("wrap", "prefix"),
    [
        (lambda sd: sd, "module."),
        (lambda sd: {"state_dict": sd, "best_prec1": 91.7}, "module."),
        (lambda sd: {"model": sd, "epoch": 2}, "_orig_mod."),
        (lambda sd: {"model_state_dict": sd}, "module._orig_mod."),
        (lambda sd: sd, ""),
    ],
)
def test_read_state_dict_layouts_and_prefixes(tmp_path: Path, wrap, prefix: str) -> None:
    model = build_model("cifar_resnet20", num_classes=10)
    state = OrderedDict((prefix + k, v) for k, v in model.state_dict().items())
    torch.save(wrap(state), tmp_path / "ck.pt")
    read = read_state_dict(tmp_path / "ck.pt")
    assert list(read) == list(model.state_dict())
    load_weights(model, tmp_path / "ck.pt")  # strict


def test_prefix_kept_when_not_on_every_key() -> None:
    from edgekd.models.checkpoint import strip_prefixes

    assert list(strip_prefixes({"module.a": 1, "b": 2})) == ["module.a", "b"]


def test_pickled_object_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": Payload()}, path)
    with pytest.raises(UsageError, match="weights_only=True and refuses it") as err:
        read_state_dict(path)
    assert "\n" not in str(err.value)
    with pytest.raises(UsageError, match="weights_only"):
        load_edgekd_checkpoint(path)
    assert "pwned" not in capsys.readouterr().out


def test_unreadable_files_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        read_state_dict(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_text("hello, not a checkpoint")
    with pytest.raises(UsageError, match="is not a readable PyTorch checkpoint") as err:
        read_state_dict(junk)
    assert "\n" not in str(err.value)
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pt")
    with pytest.raises(UsageError, match=r"holds no state_dict \(top-level keys: epoch, lr\)"):
        read_state_dict(tmp_path / "meta.pt")


def test_mismatch_names_missing_and_unexpected_keys(tmp_path: Path) -> None:
    model = build_model("cifar_resnet20", num_classes=10)
    state = model.state_dict()
    for key in ("layer1.0.conv1.weight", "layer1.0.bn1.weight", "layer1.0.bn1.bias"):
        del state[key]
    state["extra.a"] = torch.zeros(1)
    state["extra.b"] = torch.zeros(1)
    torch.save(state, tmp_path / "ck.pt")
    with pytest.raises(UsageError) as err:
        load_weights(model, tmp_path / "ck.pt", arch="cifar_resnet20")
    assert str(err.value) == (
        f"checkpoint {tmp_path / 'ck.pt'} does not fit model cifar_resnet20: missing 3 keys "
        "(layer1.0.conv1.weight, layer1.0.bn1.weight, layer1.0.bn1.bias), unexpected 2 keys (extra.a, extra.b)"
    )
    report = load_weights(model, state, strict=False)
    assert len(report.missing) == 3 and report.unexpected == ["extra.a", "extra.b"]


def test_other_depth_is_refused_with_counts() -> None:
    state = build_model("cifar_resnet32", num_classes=10).state_dict()  # 2 more blocks x 3 stages x 12 keys
    with pytest.raises(UsageError, match=r"does not fit model cifar_resnet20: unexpected 72 keys \(layer1\.3\."):
        load_weights(build_model("cifar_resnet20", num_classes=10), state, arch="cifar_resnet20")


def test_head_mismatch_and_skip_head() -> None:
    source = build_model("cifar_resnet20", num_classes=10)
    target = build_model("cifar_resnet20", num_classes=100)
    head_before = target.linear.weight.detach().clone()
    with pytest.raises(UsageError) as err:
        load_weights(target, source.state_dict(), arch="cifar_resnet20")
    msg = str(err.value)
    assert "2 shape mismatches (linear.weight: checkpoint [10, 64] vs model [100, 64]" in msg
    assert msg.endswith("load with skip_head")

    report = load_weights(target, source.state_dict(), skip_head=True)
    assert report.skipped_head == ["linear.bias", "linear.weight"]
    assert torch.equal(target.linear.weight, head_before)
    assert torch.equal(target.layer3[2].conv2.weight, source.layer3[2].conv2.weight)

    # a backbone-only checkpoint (no head at all) also loads with skip_head
    backbone = {k: v for k, v in source.state_dict().items() if not k.startswith("linear.")}
    assert load_weights(target, backbone, skip_head=True).skipped_head == []


def test_file_without_architecture_needs_teacher_flags(tmp_path: Path) -> None:
    torch.save(build_model("small_cnn", num_classes=3).state_dict(), tmp_path / "plain.pt")
    with pytest.raises(UsageError, match="does not record its architecture.*--teacher ARCH --teacher-weights PATH"):
        load_edgekd_checkpoint(tmp_path / "plain.pt")
    torch.save({"format": "edgekd-checkpoint/9", "arch": "small_cnn"}, tmp_path / "future.pt")
    with pytest.raises(UsageError, match="upgrade edgekd"):
        load_edgekd_checkpoint(tmp_path / "future.pt")


def test_save_refuses_unknown_arch(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown model 'smal_cnn': did you mean small_cnn"):
        save_edgekd_checkpoint(tmp_path / "a.pt", build_model("small_cnn", num_classes=2), "smal_cnn",
                               {"num_classes": 2, "in_channels": 3})
    assert not list(tmp_path.iterdir())
