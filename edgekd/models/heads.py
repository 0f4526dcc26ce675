"""Find, replace and unfreeze around a classifier's head.

The head is the final nn.Linear that produces the logits. Known attribute names are tried first (`fc`,
`linear`, `head`, `heads`, `classifier`, then the last Linear inside them); otherwise the last nn.Linear in
module order is taken, which is right for torchvision and timm models whose classifier is built last.
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.errors import UsageError

HEAD_ATTRS = ("fc", "linear", "head", "heads", "classifier")
# backbone containers split into their children for staged unfreezing (dotted paths from the model root):
# torchvision's MobileNet/EfficientNet/VGG/ConvNeXt/DenseNet/Swin `features`, MNASNet `layers`, RegNet
# `trunk_output`, MaxViT `blocks`, ViT `encoder.layers`; edgekd's small_cnn `features`.
SPLIT_CONTAINERS = frozenset({"features", "layers", "trunk_output", "blocks", "encoder", "encoder.layers"})


def _last_linear(module: nn.Module, prefix: str = "") -> tuple[str, nn.Linear] | None:
    found = None
    for name, sub in module.named_modules(prefix=prefix):
        if isinstance(sub, nn.Linear):
            found = (name, sub)
    return found


def find_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """The final classifier layer and its dotted path, e.g. ("fc", Linear) or ("classifier.3", Linear)."""
    for attr in HEAD_ATTRS:
        sub = getattr(model, attr, None)
        if isinstance(sub, nn.Module):
            found = _last_linear(sub, prefix=attr)
            if found is not None:
                return found
    found = _last_linear(model)
    if found is None:
        raise UsageError(
            f"cannot find the classifier head of {type(model).__name__}: it has no nn.Linear layer "
            "(models whose head is a conv, such as squeezenet, are not supported for head replacement)"
        )
    return found


def head_parameter_names(model: nn.Module) -> list[str]:
    """Names of the head's parameters in `model.named_parameters()` (e.g. ["fc.weight", "fc.bias"])."""
    path, head = find_head(model)
    return [f"{path}.{name}" for name, _ in head.named_parameters()]


def replace_head(model: nn.Module, num_classes: int, seed: int = 0) -> nn.Module:
    """Put a fresh Linear(in_features, num_classes) in place of the head; returns `model` (changed in place).

    The new weights are drawn from N(0, 0.01) with a generator seeded by `seed` and the bias is zero, so
    the same call gives the same head on every run and the first logits are near uniform.
    """
    if num_classes < 1:
        raise UsageError(f"the number of classes must be at least 1, got {num_classes}")
    path, old = find_head(model)
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        new.weight.copy_(torch.randn(new.weight.shape, generator=gen) * 0.01)
        if new.bias is not None:
            new.bias.zero_()
    new = new.to(device=old.weight.device, dtype=old.weight.dtype)
    new.train(old.training)
    model.set_submodule(path, new)
    return model


def _param_names(module: nn.Module, prefix: str) -> list[str]:
    return [f"{prefix}.{name}" for name, _ in module.named_parameters()]


def _is_single_layer(module: nn.Module) -> bool:
    """A layer with parameters of its own and no children (conv, BN, linear, ...)."""
    return not any(True for _ in module.children()) and any(
        True for _ in module.parameters(recurse=False)
    )


def unfreeze_stages(model: nn.Module) -> list[list[str]]:
    """Parameter names grouped for staged unfreezing, from the head backwards.

    Group 0 is the head. Then the top-level children in reverse order, one group each; a backbone
    container (SPLIT_CONTAINERS, e.g. `features`) is split into its children; consecutive single layers
    (conv1, bn1) make one stem group; the model's own parameters (e.g. a ViT class token) join the last
    group. Every parameter is in exactly one group:
    a CIFAR ResNet gives [linear], [layer3], [layer2], [layer1], [conv1, bn1].
    """
    head = head_parameter_names(model)
    head_set = set(head)
    units: list[tuple[bool, list[str]]] = []  # (single layer?, names) in model order

    def expand(module: nn.Module, path: str) -> None:
        if path not in SPLIT_CONTAINERS:
            units.append((_is_single_layer(module), _param_names(module, path)))
            return
        own = [f"{path}.{n}" for n, _ in module.named_parameters(recurse=False)]
        if own:
            units.append((False, own))
        for name, child in module.named_children():
            expand(child, f"{path}.{name}")

    for name, child in model.named_children():
        expand(child, name)
    groups: list[list[str]] = []
    prev_single = False
    for single, names in reversed(units):
        names = [n for n in names if n not in head_set]
        if not names:  # a parameter-free layer (ReLU, pooling) ends a run of single layers
            prev_single = False
            continue
        if single and prev_single:
            groups[-1] = names + groups[-1]
        else:
            groups.append(names)
        prev_single = single
    own = [n for n, _ in model.named_parameters(recurse=False) if n not in head_set]
    if own:
        if groups:
            groups[-1] = own + groups[-1]
        else:
            groups.append(own)
    return [head, *groups]

