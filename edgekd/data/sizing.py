"""Input size and the eval transform of a folder dataset: explicit, recorded choices.

Input size, first that applies: `--input-size`, the target profile's pinned size, the teacher's published
preprocessing (torchvision weights' transforms(), timm's pretrained_cfg; only for published weights), else
the data: every sampled image the same size -> that size; otherwise a square of the median shorter side over
a bounded, evenly spaced sample of file headers, capped at SIZE_CAP pixels.

Eval transform: resize the shorter side to `resize_shorter` then centre crop to the input size. From the
teacher when it publishes a resize size and interpolation; otherwise, for photos (input >= PHOTO_MIN px)
shorter side = round(size / CROP_RATIO) (256 for 224, as ImageNet evaluation does), and for small images the
size itself (resize to cover the crop, then crop the centre); bilinear.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgekd.data.sources import median_input_size, probe_images
from edgekd.errors import UsageError
from edgekd.fsio import short_hash
from edgekd.manifest import Preprocessing

SIZE_CAP = 224
CROP_RATIO = 0.875
PHOTO_MIN = 64


def parse_input_size(value: Any) -> tuple[int, int] | None:
    """'224' -> (224, 224); '256x192' -> (256, 192) (height x width); a pair or an int as is."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        parts = [value, value]
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        parts = list(value)
    else:
        text = str(value).strip().lower()
        bits = text.split("x") if "x" in text else [text, text]
        parts = [int(b) if b.strip().isdigit() else -1 for b in bits] if len(bits) == 2 else [-1, -1]
    if not all(isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 8192 for p in parts):
        raise ValueError(f"takes N or HxW pixels between 1 and 8192 (e.g. 224 or 256x192), got {value!r}")
    return int(parts[0]), int(parts[1])


def default_resize(size: tuple[int, int]) -> int:
    side = min(size)
    return round(side / CROP_RATIO) if side >= PHOTO_MIN else side


def default_augment(channels: int, size: tuple[int, int]) -> str:
    """Train augmentation that fits the data: random-resized-crop + flip for photos, pad-crop (+ flip for
    colour) for small images."""
    if channels == 3 and min(size) >= PHOTO_MIN:
        return "rrc_flip"
    return "crop" if channels == 1 else "crop_flip"


def teacher_preprocessing(arch: str) -> dict[str, Any] | None:
    """The teacher's published preprocessing (edgekd.models.registry), None when it has none."""
    from edgekd.models.registry import preprocessing_defaults

    try:
        return preprocessing_defaults(arch)
    except UsageError:
        return None


def folder_preprocessing(cfg, files: list[Path], class_names: list[str]) -> Preprocessing:
    """The Preprocessing record of a folder dataset under DataConfig `cfg` (see the module docstring)."""
    from edgekd.data.dataset import IMAGENET_MEAN, IMAGENET_STD

    probe = probe_images(files)
    channels = probe.channels
    if cfg.input_size is not None:
        size, why = tuple(cfg.input_size), cfg.size_source or "pinned by the target profile"
    else:
        size, why = median_input_size(probe, cfg.size_cap)
        why = f"from the data: {why}"
    mean = cfg.mean if cfg.mean and len(cfg.mean) == channels else None
    std = cfg.std if cfg.std and len(cfg.std) == channels else None
    rgb = channels == 3
    return Preprocessing(
        input_size=size, channels=channels, mean=mean or (IMAGENET_MEAN if rgb else [0.5]),
        std=std or (IMAGENET_STD if rgb else [0.5]), value_scale=255.0,
        resize_shorter=cfg.resize_shorter or default_resize(size), interpolation=cfg.interpolation or "bilinear",
        size_source=why, channel_order="RGB" if rgb else "GRAY", class_names=class_names)


def preprocessing_key(pre: Preprocessing) -> str:
    """A short hash of every step that changes pixels or model inputs (part of the data fingerprint)."""
    facts = pre.model_dump(mode="json", exclude={"class_names", "size_source"})
    return short_hash(json.dumps(facts, sort_keys=True), 8)


def describe(pre: Preprocessing) -> str:
    """One line for reports: the eval transform as applied."""
    h, w = pre.input_size
    if pre.source == "array":
        return f"{h}x{w} arrays, no resize"
    return (f"{h}x{w} input ({pre.size_source}); EXIF orientation applied; resize shorter side to "
            f"{pre.resize_shorter} ({pre.interpolation}, antialiased), centre crop {h}x{w}")


def preprocessing_options(opts, target) -> dict[str, Any]:
    """DataConfig fields for `compress`: --input-size, else the target's pinned size, else the teacher's
    published preprocessing (only with --pretrained: its weights define it), else the data decides."""
    out: dict[str, Any] = {"strict": bool(opts.strict_data)}
    published = teacher_preprocessing(opts.teacher) if opts.pretrained and opts.teacher else None
    if published:
        out.update(mean=published.get("mean"), std=published.get("std"))
        if published.get("interpolation") in ("nearest", "bilinear", "bicubic", "lanczos"):
            out["interpolation"] = published["interpolation"]
    for key in ("mean", "std"):  # the user's statistics win over published ones
        if getattr(opts, key, None):
            out[key] = list(getattr(opts, key))
    if opts.input_size is not None:
        out.update(input_size=tuple(opts.input_size), size_source="--input-size")
    elif target.input_size is not None:
        out.update(input_size=tuple(target.input_size), size_source=f"pinned by target {target.name}")
    elif opts.teacher and opts.teacher.lower().endswith(".onnx"):
        from edgekd.models.onnx_teacher import OnnxTeacher

        fixed = OnnxTeacher(Path(opts.teacher), opts.teacher).fixed_size
        if fixed is None:
            raise UsageError(f"{opts.teacher} takes images of any size (dynamic height and width): pass "
                             "--input-size HxW, the size it was trained at")
        out.update(input_size=fixed, size_source=f"the ONNX teacher's input ({Path(opts.teacher).name})")
    elif published and published.get("input_size"):
        side = int(published["input_size"])
        out.update(input_size=(side, side), size_source=f"{opts.teacher}'s published weights")
        if published.get("resize_size"):
            out["resize_shorter"] = int(published["resize_size"])
    return out
