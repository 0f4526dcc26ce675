"""The public CIFAR-10 ResNets in ../shared load strictly and keep their accuracy (skips without ../shared).

SOURCE.md: resnet56 reaches 83.20% top-1 on the whole JPEG test set (10,000 images). Here: the first 100
images of each class (1,000), so the floor and ceiling are wide ([0.78, 0.88]).
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import torch
from torchvision import datasets, transforms

from edgekd.models import build_model, load_weights, read_state_dict

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CIFAR_RESNETS = SHARED / "models" / "cifar10-resnet"
CIFAR_TEST = SHARED / "data" / "cifar10-jpeg" / "test.tar.gz"
PER_CLASS = 100


def _weights(depth: int) -> Path:
    return next(CIFAR_RESNETS.glob(f"resnet{depth}-*.th"))


@pytest.mark.skipif(not CIFAR_RESNETS.exists(), reason="../shared/models/cifar10-resnet is absent")
@pytest.mark.parametrize("depth", [20, 56])
def test_shared_cifar_resnets_load_strictly(depth: int) -> None:
    model = build_model(f"cifar_resnet{depth}", num_classes=10)
    state = read_state_dict(_weights(depth))  # keys carry `module.` in the file
    assert not any(k.startswith("module.") for k in state)
    load_weights(model, _weights(depth), strict=True, arch=f"cifar_resnet{depth}")
    assert torch.equal(model.linear.weight, state["linear.weight"])


def _extract_subset(archive: Path, dest: Path, per_class: int) -> Path:
    with tarfile.open(archive, "r:gz") as tar:
        files = sorted(m.name for m in tar.getmembers() if m.isfile() and m.name.endswith(".jpg"))
    keep: dict[str, list[str]] = {}
    for name in files:  # test/<class>/<NNNN>.jpg
        cls = name.split("/")[1]
        if len(keep.setdefault(cls, [])) < per_class:
            keep[cls].append(name)
    wanted = {n for names in keep.values() for n in names}
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(dest, members=[m for m in tar if m.name in wanted], filter="data")
    return dest / "test"


NEEDS_DATA = pytest.mark.skipif(
    not (CIFAR_RESNETS.exists() and CIFAR_TEST.exists()), reason="../shared CIFAR-10 weights or data are absent"
)


@pytest.fixture(scope="module")
def jpeg_test_subset(tmp_path_factory: pytest.TempPathFactory) -> datasets.ImageFolder:
    """The first PER_CLASS test images of each class, with the upstream preprocessing (SOURCE.md)."""
    root = _extract_subset(CIFAR_TEST, tmp_path_factory.mktemp("cifar10-jpeg"), PER_CLASS)
    tf = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    )
    data = datasets.ImageFolder(str(root), transform=tf)
    assert len(data) == 10 * PER_CLASS and data.classes[0] == "airplane" and data.classes[-1] == "truck"
    return data


def _top1(depth: int, data: torch.utils.data.Dataset) -> float:
    model = build_model(f"cifar_resnet{depth}", num_classes=10)
    load_weights(model, _weights(depth), arch=f"cifar_resnet{depth}")
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(data, batch_size=250, num_workers=0):
            correct += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    return correct / total


@NEEDS_DATA
def test_shared_resnet20_accuracy_on_small_jpeg_subset(jpeg_test_subset: datasets.ImageFolder) -> None:
    """Quick real-data check in the default run: 20 images per class (200); SOURCE.md: 81.03% on all."""
    per_class = [i for i in range(len(jpeg_test_subset)) if i % PER_CLASS < 20]  # classes are contiguous
    assert len(per_class) == 200
    top1 = _top1(20, torch.utils.data.Subset(jpeg_test_subset, per_class))
    assert 0.70 <= top1 <= 0.92, f"top-1 {top1:.3f} on 200 JPEG test images"


@pytest.mark.slow  # 15-40 s on 2 busy CPU cores: 1,000 forward passes of ResNet-56
@NEEDS_DATA
def test_shared_resnet56_accuracy_on_jpeg_subset(jpeg_test_subset: datasets.ImageFolder) -> None:
    top1 = _top1(56, jpeg_test_subset)
    assert 0.78 <= top1 <= 0.88, f"top-1 {top1:.3f} on {len(jpeg_test_subset)} JPEG test images"
