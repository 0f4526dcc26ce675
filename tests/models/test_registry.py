"""build_model / list_models / model_family / preprocessing_defaults, offline pretrained weights."""

from __future__ import annotations

import os
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from edgekd.errors import EdgekdError, UsageError
from edgekd.models import (
    build_model,
    find_head,
    list_models,
    model_family,
    preprocessing_defaults,
    read_state_dict,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CIFAR_RESNETS = SHARED / "models" / "cifar10-resnet"

# (arch, in_channels, input px) for every edgekd name, on the input it is meant for
OWN = [
    ("cifar_resnet20", 3, 32),
    ("cifar_resnet32", 3, 32),
    ("cifar_resnet44", 3, 32),
    ("cifar_resnet56", 3, 32),
    ("cifar_resnet110", 3, 32),
    ("resnet18_cifar", 3, 32),
    ("mobilenet_v3_small", 3, 32),
    ("small_cnn", 1, 8),
    ("small_cnn", 3, 32),
]
# a sample of torchvision's families (building all 80, ViT-H included, would take minutes)
TORCHVISION = ["resnet18", "mobilenet_v2", "efficientnet_b0", "googlenet", "shufflenet_v2_x0_5"]


@pytest.mark.parametrize(("arch", "in_channels", "px"), OWN)
def test_own_models_build_and_run(arch: str, in_channels: int, px: int) -> None:
    model = build_model(arch, num_classes=7, in_channels=in_channels, input_size=px).eval()
    with torch.no_grad():
        out = model(torch.randn(2, in_channels, px, px))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", TORCHVISION)
def test_torchvision_models_build_and_run(arch: str) -> None:
    model = build_model(arch, num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 5)


def test_list_models_has_own_and_every_torchvision_name() -> None:
    names = list_models()
    assert names == sorted(names)
    assert {a for a, _, _ in OWN} <= set(names)
    assert set(torchvision.models.list_models(module=torchvision.models)) <= set(names)


def test_torchvision_in_channels_replaces_first_conv() -> None:
    model = build_model("resnet18", num_classes=3, in_channels=1).eval()
    assert model.conv1.in_channels == 1 and model.conv1.out_channels == 64
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 3)


@pytest.mark.parametrize(("input_size", "stride"), [(32, (1, 1)), (64, (1, 1)), (224, (2, 2)), (None, (2, 2))])
def test_mobilenet_small_input_stem(input_size: int | None, stride: tuple[int, int]) -> None:
    model = build_model("mobilenet_v3_small", num_classes=10, input_size=input_size)
    assert model.features[0][0].stride == stride
    assert find_head(model)[0] == "classifier.3"  # torchvision names kept


def test_cifar_resnet_shapes_and_params() -> None:
    model = build_model("cifar_resnet20", num_classes=10)
    n_params = sum(p.numel() for p in model.parameters())
    assert 0.26e6 < n_params < 0.28e6  # 0.27M in He et al. table 6
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert len(model.layer1) == 3 and model.layer3[0].conv1.stride == (2, 2)


def test_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(UsageError) as err:
        build_model("resnt18", num_classes=10)
    msg = str(err.value)
    assert msg == ("unknown model 'resnt18': did you mean resnet18, resnet18_cifar? (edgekd models lists them; or a "
                   "model source: pkg.module:factory, file.py:factory, model.pt2, model.onnx)")
    assert err.value.exit_code == 2
    with pytest.raises(UsageError, match="unknown model 'qqqq' \\(edgekd"):
        model_family("qqqq")
    with pytest.raises(UsageError, match="mobilenet_v3_small"):
        preprocessing_defaults("mobilenetv3_small")


def test_bad_arguments_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="num_classes"):
        build_model("small_cnn", num_classes=0)
    with pytest.raises(UsageError, match="no pretrained weights"):
        build_model("small_cnn", num_classes=10, pretrained=True)


def test_model_family() -> None:
    assert model_family("cifar_resnet56") == "cifar_resnet"
    assert model_family("resnet18_cifar") == "resnet"
    assert model_family("resnet50") == "resnet"
    assert model_family("mobilenet_v3_small") == "mobilenetv3"
    assert model_family("efficientnet_b0") == "efficientnet"
    assert model_family("small_cnn") == "small_cnn"
    assert model_family("timm:resnet18") == "timm"


def test_preprocessing_defaults() -> None:
    cifar = preprocessing_defaults("cifar_resnet20")
    assert cifar == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "input_size": 32}
    tv = preprocessing_defaults("resnet18")
    assert tv is not None and tv["input_size"] == 224 and tv["resize_size"] == 256
    assert tv["mean"] == pytest.approx([0.485, 0.456, 0.406]) and tv["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert preprocessing_defaults("efficientnet_b0")["input_size"] == 224
    assert preprocessing_defaults("small_cnn") is None
    assert preprocessing_defaults("resnet18_cifar") is None


def test_timm_missing_says_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError, installed or not
    with pytest.raises(UsageError, match="pip install timm"):
        build_model("timm:resnet18", num_classes=10)


def _no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def refuse(url: str, *args: object, **kwargs: object) -> None:
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return calls


def test_pretrained_torchvision_from_local_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = torchvision.models.get_model_weights("resnet18").DEFAULT
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    reference = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(reference, cache / weights.url.rsplit("/", 1)[-1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    calls = _no_network(monkeypatch)

    model = build_model("resnet18", num_classes=1000, pretrained=True)
    assert calls == []
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key]), key

    # another class count: same backbone, a fresh head; one input channel: conv1 summed over RGB
    model = build_model("resnet18", num_classes=10, in_channels=1, pretrained=True)
    assert model.fc.out_features == 10
    assert torch.equal(model.layer4[1].conv2.weight, reference["layer4.1.conv2.weight"])
    assert torch.allclose(model.conv1.weight, reference["conv1.weight"].sum(1, keepdim=True))
    assert calls == []


def test_pretrained_download_failure_is_one_actionable_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    calls = _no_network(monkeypatch)
    for arch in ("resnet18", "cifar_resnet20", "mobilenet_v3_small"):
        with pytest.raises(EdgekdError) as err:
            build_model(arch, num_classes=10, pretrained=True)
        msg = str(err.value)
        assert "\n" not in msg
        assert msg.startswith(f"could not download the pretrained weights for {arch}")
        assert "--teacher-weights" in msg and "$TORCH_HOME/hub/checkpoints" in msg
        assert str(tmp_path / "hub" / "checkpoints") in msg
    assert len(calls) == 3


@pytest.mark.skipif(not CIFAR_RESNETS.exists(), reason="../shared/models/cifar10-resnet is absent")
def test_pretrained_cifar_resnet_from_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = next(CIFAR_RESNETS.glob("resnet20-*.th"))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    os.symlink(src, cache / src.name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    calls = _no_network(monkeypatch)
    model = build_model("cifar_resnet20", num_classes=10, pretrained=True)
    reference = read_state_dict(src)
    assert calls == []
    own = model.state_dict()
    for key, value in reference.items():
        assert torch.equal(own[key], value), key
    assert build_model("cifar_resnet20", num_classes=100, pretrained=True).linear.out_features == 100
