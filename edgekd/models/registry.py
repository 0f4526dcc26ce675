"""Model names -> constructors: one registry for edgekd's own models, then torchvision, then timm.

Resolution of `arch`, exact names only (nothing is silently corrected):
1. a name registered here with `@register_model` (`cifar_resnet20..110`, `resnet18_cifar`,
   `mobilenet_v3_small` (torchvision's, with the small-input option), `small_cnn`);
2. any torchvision classification model (`torchvision.models.list_models(module=torchvision.models)`),
   with pretrained weights through its weights enum (`get_model_weights(name).DEFAULT`);
3. `timm:<name>` when timm is installed.
An unknown name raises UsageError with the closest names (difflib).

Pretrained weights are fetched with torch.hub into `$TORCH_HOME/hub/checkpoints`; a file already there is
used without network. When the pretrained class count or input channels differ from the request, the head
is replaced (heads.replace_head) and the first conv adapted (small.replace_conv).
"""

from __future__ import annotations

import difflib
import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.errors import EdgekdError, UsageError
from edgekd.models import cifar_resnet as _cifar
from edgekd.models import family as _family
from edgekd.models import small as _small
from edgekd.models.checkpoint import load_weights, read_state_dict
from edgekd.models.heads import replace_head

TIMM_PREFIX = "timm:"
# torchvision builders whose defaults do not suit training here: plain logits, no init warning.
_TORCHVISION_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False},
    "inception_v3": {"aux_logits": False},
}

Builder = Callable[[int, int, bool, "int | None"], nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder (num_classes, in_channels, pretrained, input_size) and facts."""

    name: str
    family: str
    builder: Builder
    preprocessing: Callable[[], dict[str, Any] | None]


_REGISTRY: dict[str, ModelSpec] = {}


def _no_preprocessing() -> None:
    return None


def register_model(
    name: str, family: str, preprocessing: Callable[[], dict[str, Any] | None] = _no_preprocessing
) -> Callable[[Builder], Builder]:
    """Decorator: register `builder(num_classes, in_channels, pretrained, input_size)` under `name`."""

    def deco(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, family, builder, preprocessing)
        return builder

    return deco


# ---------------------------------------------------------------- pretrained weights: download or cache


def _download_error(arch: str, url: str, exc: BaseException) -> EdgekdError:
    fname = url.rsplit("/", 1)[-1]
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
    where = Path(torch.hub.get_dir()) / "checkpoints"
    return EdgekdError(
        f"could not download the pretrained weights for {arch} from {url} ({reason}): pass a local file "
        f"with --teacher-weights PATH, or put {fname} into $TORCH_HOME/hub/checkpoints (now {where})"
    )


def _cached_download(arch: str, url: str) -> Path:
    """The file for `url` in torch.hub's checkpoint cache, downloaded (sha256-prefix checked) if absent."""
    fname = url.rsplit("/", 1)[-1]
    path = Path(torch.hub.get_dir()) / "checkpoints" / fname
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        hash_prefix = fname.rsplit("-", 1)[-1].split(".")[0]
        try:
            torch.hub.download_url_to_file(url, str(path), hash_prefix=hash_prefix, progress=False)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad hash a RuntimeError
            raise _download_error(arch, url, exc) from None
    return path


def _adapt(model: nn.Module, num_classes: int, in_channels: int, built_classes: int) -> nn.Module:
    """Fit a model built for `built_classes` classes and RGB to the requested classes and channels."""
    if built_classes != num_classes:
        replace_head(model, num_classes)
    if in_channels != 3:
        try:
            path, conv = _small.first_conv(model)
        except ValueError:
            raise UsageError(
                f"{type(model).__name__} has no Conv2d stem to adapt to {in_channels} input channels"
            ) from None
        if conv.in_channels != in_channels:
            _small.replace_conv(model, path, in_channels=in_channels)
    return model


# ------------------------------------------------------------------------------- edgekd's own models


def _cifar_builder(depth: int) -> Builder:
    name = f"cifar_resnet{depth}"

    def build(num_classes: int, in_channels: int, pretrained: bool, input_size: int | None) -> nn.Module:
        if not pretrained:
            return _cifar.cifar_resnet(depth, num_classes=num_classes, in_channels=in_channels)
        model = _cifar.cifar_resnet(depth, num_classes=_cifar.PRETRAINED_NUM_CLASSES)
        path = _cached_download(name, _cifar.PRETRAINED_URLS[depth])
        load_weights(model, read_state_dict(path), strict=True, arch=name)
        return _adapt(model, num_classes, in_channels, _cifar.PRETRAINED_NUM_CLASSES)

    return build


for _depth in _cifar.DEPTHS:
    register_model(
        f"cifar_resnet{_depth}", "cifar_resnet", preprocessing=lambda: dict(_cifar.PREPROCESSING)
    )(_cifar_builder(_depth))


def _no_weights(name: str) -> UsageError:
    return UsageError(
        f"{name} has no pretrained weights: build it with pretrained=False (train it), or pass a "
        "checkpoint with --student-weights / --teacher-weights"
    )


@register_model("resnet18_cifar", "resnet")
def _resnet18_cifar(
    num_classes: int, in_channels: int, pretrained: bool, input_size: int | None
) -> nn.Module:
    if pretrained:
        raise _no_weights("resnet18_cifar")
    return _small.resnet18_cifar(num_classes=num_classes, in_channels=in_channels)


@register_model("small_cnn", "small_cnn")
def _small_cnn(
    num_classes: int, in_channels: int, pretrained: bool, input_size: int | None
) -> nn.Module:
    if pretrained:
        raise _no_weights("small_cnn")
    return _small.small_cnn(num_classes=num_classes, in_channels=in_channels)


@register_model(
    "mobilenet_v3_small",
    "mobilenetv3",
    preprocessing=lambda: _torchvision_preprocessing("mobilenet_v3_small"),
)
def _mobilenet_v3_small(
    num_classes: int, in_channels: int, pretrained: bool, input_size: int | None
) -> nn.Module:
    if not pretrained:  # trained here from scratch: BN momentum 0.1 (see edgekd.models.family)
        return _family.fix_bn_momentum(_small.mobilenet_v3_small(num_classes, in_channels, input_size))
    model = _build_torchvision("mobilenet_v3_small", num_classes, in_channels, pretrained=True)
    return _small.adapt_mobilenet_v3_small(model, in_channels, input_size)


def _family_builder(name: str) -> Builder:
    def build(num_classes: int, in_channels: int, pretrained: bool, input_size: int | None) -> nn.Module:
        if pretrained:
            raise _no_weights(name)
        return _family.build_family(name, num_classes, in_channels, input_size)

    return build


for _name in _family.family_names():
    register_model(_name, "cifar_resnet" if _name.startswith("cifar") else "mobilenetv3")(_family_builder(_name))


# ---------------------------------------------------------------------------------------- torchvision


@functools.lru_cache(maxsize=1)
def _torchvision_names() -> tuple[str, ...]:
    import torchvision.models as tvm

    return tuple(tvm.list_models(module=tvm))


def _torchvision_weights(name: str) -> Any | None:
    import torchvision.models as tvm

    try:
        return tvm.get_model_weights(name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return None


def _build_torchvision(name: str, num_classes: int, in_channels: int, pretrained: bool) -> nn.Module:
    import torchvision.models as tvm

    kwargs = dict(_TORCHVISION_KWARGS.get(name, {}))
    if not pretrained:
        if name in ("googlenet", "inception_v3"):
            kwargs["init_weights"] = True
        model = tvm.get_model(name, weights=None, num_classes=num_classes, **kwargs)
        return _adapt(model, num_classes, in_channels, num_classes)
    weights = _torchvision_weights(name)
    if weights is None:
        raise _no_weights(name)
    try:
        model = tvm.get_model(name, weights=weights, **kwargs)
    except OSError as exc:  # urllib's URLError and socket errors when offline
        raise _download_error(name, weights.url, exc) from None
    return _adapt(model, num_classes, in_channels, len(weights.meta["categories"]))


def _torchvision_preprocessing(name: str) -> dict[str, Any] | None:
    weights = _torchvision_weights(name)
    if weights is None:
        return None
    t = weights.transforms()
    crop, resize = getattr(t, "crop_size", None), getattr(t, "resize_size", None)
    interp = getattr(t, "interpolation", None)
    return {
        "mean": [float(v) for v in t.mean],
        "std": [float(v) for v in t.std],
        "input_size": int(crop[0]) if crop else None,
        "resize_size": int(resize[0]) if resize else None,
        "interpolation": getattr(interp, "value", None),
        "weights": str(weights),
    }


# ----------------------------------------------------------------------------------------------- timm


def _timm() -> Any:
    try:
        return importlib.import_module("timm")
    except ImportError:
        raise UsageError(
            "the package 'timm' is not installed (needed for 'timm:<name>' models): pip install timm"
        ) from None


def _timm_name(arch: str) -> str:
    timm = _timm()
    name = arch[len(TIMM_PREFIX) :]
    if not timm.is_model(name):
        close = suggest(name, timm.list_models())
        hint = f": did you mean {', '.join(TIMM_PREFIX + c for c in close)}?" if close else ""
        raise UsageError(f"unknown timm model '{name}'{hint} (timm.list_models() lists them)")
    return name


def _build_timm(arch: str, num_classes: int, in_channels: int, pretrained: bool) -> nn.Module:
    timm = _timm()
    name = _timm_name(arch)
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_channels)
    except OSError as exc:  # huggingface_hub's offline errors are OSErrors too
        raise _download_error(arch, f"timm/{name}", exc) from None


# ------------------------------------------------------------------------------------------- public API


def list_models() -> list[str]:
    """Every name build_model accepts (edgekd's own and torchvision's), sorted; plus `timm:<name>`."""
    return sorted(set(_REGISTRY) | set(_torchvision_names()))


def suggest(query: str, candidates: list[str] | tuple[str, ...], n: int = 3) -> list[str]:
    """Names close to `query` (difflib), also scored on each name's prefix so `resnt18` finds
    `resnet18_cifar`; only those within 0.1 of the best score, at most n."""

    def score(cand: str) -> float:
        full = difflib.SequenceMatcher(None, query, cand).ratio()
        head = difflib.SequenceMatcher(None, query, cand[: len(query) + 1]).ratio()
        return max(full, head)

    scored = sorted(((score(c), c) for c in candidates), key=lambda t: (-t[0], t[1]))
    if not scored or scored[0][0] < 0.6:
        return []
    best = scored[0][0]
    return [c for s, c in scored[:n] if s >= max(0.6, best - 0.1)]


def unknown_model(arch: str, extra: str = "") -> UsageError:
    close = suggest(arch, list_models())
    hint = f": did you mean {', '.join(close)}?" if close else ""
    return UsageError(f"unknown model '{arch}'{hint} (edgekd models lists them{extra})")


def is_registered(arch: str) -> bool:
    """A name of this registry, torchvision's, or `timm:<name>` (not a file or an import path)."""
    return arch in _REGISTRY or arch.startswith(TIMM_PREFIX) or arch in _torchvision_names()


def model_family(arch: str) -> str:
    """The architecture family: `cifar_resnet`, `small_cnn`, `timm`, or torchvision's module name
    (`resnet`, `mobilenetv3`, `efficientnet`, `vision_transformer`, ...); for a model source (an import path,
    a .pt2 or .onnx file, an in-memory module: edgekd.models.sources) `custom`, `exported` or `onnx`."""
    if arch in _REGISTRY:
        return _REGISTRY[arch].family
    if arch.startswith(TIMM_PREFIX):
        return "timm"
    if arch in _torchvision_names():
        import torchvision.models as tvm

        return tvm.get_model_builder(arch).__module__.rsplit(".", 1)[-1]
    from edgekd.models import sources

    return sources.family(sources.resolve(arch))


def build_model(
    arch: str,
    num_classes: int,
    in_channels: int = 3,
    pretrained: bool = False,
    input_size: int | None = None,
    source_kwargs: dict[str, Any] | None = None,
    source_output: str | None = None,
) -> nn.Module:
    """Build `arch` with `num_classes` outputs for `in_channels` inputs.

    `arch` may also be a model source (edgekd.models.sources: `pkg.module:factory`, `file.py:factory` called
    with `source_kwargs`, a `.pt2` or `.onnx` file, an in-memory `module:<sha>`).

    `pretrained` loads the published weights (downloaded once into $TORCH_HOME/hub/checkpoints) and then
    replaces the head / adapts the first conv when the request differs from them. `input_size` (pixels,
    square) only matters to models with a small-input option (mobilenet_v3_small: stride-1 stem at <= 64).
    """
    for what, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{what} must be a positive integer, got {value!r}")
    if input_size is not None and (not isinstance(input_size, int) or input_size < 1):
        raise UsageError(f"input_size must be a positive integer (pixels), got {input_size!r}")
    if arch in _REGISTRY:
        return _REGISTRY[arch].builder(num_classes, in_channels, pretrained, input_size)
    if arch.startswith(TIMM_PREFIX):
        return _build_timm(arch, num_classes, in_channels, pretrained)
    if arch in _torchvision_names():
        return _build_torchvision(arch, num_classes, in_channels, pretrained)
    from edgekd.models import sources

    source = sources.resolve(arch, kwargs=source_kwargs, output=source_output)
    if pretrained:
        raise UsageError(f"--pretrained applies to registry models; {arch} brings its own weights (or pass "
                         "--teacher-weights)")
    return sources.build(source, num_classes, in_channels)


def preprocessing_defaults(arch: str) -> dict[str, Any] | None:
    """What the pretrained weights expect: {"mean", "std", "input_size", ...}; None without weights."""
    if arch in _REGISTRY:
        return _REGISTRY[arch].preprocessing()
    if arch.startswith(TIMM_PREFIX):
        cfg = _timm().get_pretrained_cfg(_timm_name(arch))
        if cfg is None:
            return None
        side = int(cfg.input_size[-1])
        crop_pct = getattr(cfg, "crop_pct", None)
        return {"mean": list(cfg.mean), "std": list(cfg.std), "input_size": side,
                "resize_size": int(side / crop_pct) if crop_pct else None,  # timm: floor(size / crop_pct)
                "interpolation": getattr(cfg, "interpolation", None)}
    if arch in _torchvision_names():
        return _torchvision_preprocessing(arch)
    from edgekd.models import sources

    sources.resolve(arch)  # an unknown name fails here, one line
    return None  # a model source: its preprocessing is the user's to state (--mean/--std/--input-size)
