"""Dataset configuration and loading: the one place that turns `--data` into train/val splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edgekd.data.sources import (
    Split, fingerprint_files, index_folder, load_digits_splits, load_images, stratified_split,
)
from edgekd.errors import UsageError
from edgekd.manifest import Preprocessing

DIGITS = "digits"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class DataConfig(BaseModel):
    """`source` is 'digits' (embedded default) or a folder: either with train/ and val/ (or test/) inside,
    or one ImageFolder tree split by `split_seed`."""

    model_config = ConfigDict(extra="forbid")

    source: str = DIGITS
    split_seed: int = 0
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    input_size: tuple[int, int] | None = None  # None: from the data (edgekd.data.sizing)
    mean: list[float] | None = None  # None: ImageNet statistics for RGB, 0.5 for grayscale
    std: list[float] | None = None
    max_train_per_class: int | None = Field(default=None, ge=1)  # a subset, said in every report
    max_val_per_class: int | None = Field(default=None, ge=1)
    # preprocessing choices (edgekd.data.sizing): None lets the data / defaults decide
    resize_shorter: int | None = Field(default=None, ge=1)
    interpolation: Literal["nearest", "bilinear", "bicubic", "lanczos"] | None = None
    size_source: str | None = None  # why input_size was given (--input-size, target, teacher weights)
    size_cap: int = Field(default=224, ge=1)
    strict: bool = False  # unreadable image files are an error instead of skipped with a warning


@dataclass
class Dataset:
    train: Split
    val: Split
    preprocessing: Preprocessing
    fingerprint: str
    description: str
    val_name: str  # "val", "test", "held-out 20%"

    @property
    def num_classes(self) -> int:
        return len(self.preprocessing.class_names)


def _cap_per_class(split: Split, cap: int | None) -> Split:
    if cap is None:
        return split
    import numpy as np

    idx = np.concatenate([np.flatnonzero(split.labels == c)[:cap] for c in np.unique(split.labels)])
    return split.subset(np.sort(idx))


def load_data(cfg: DataConfig, cache_dir: Path | None = None) -> Dataset:
    if cfg.source == DIGITS:
        train, val, names, fp = load_digits_splits()
        pre = Preprocessing(input_size=(8, 8), channels=1, mean=cfg.mean or [0.5], std=cfg.std or [0.5],
                            value_scale=16.0, resize_shorter=None, exif_transpose=False, source="array",
                            size_source="sklearn digits arrays", channel_order="GRAY", class_names=names)
        ds = Dataset(train, val, pre, f"digits:{fp}", "sklearn digits (1,797 8x8 images), fixed 80/20 split",
                     "held-out 20%")
    else:
        ds = _load_folder(cfg, Path(cfg.source), cache_dir)
    ds.train = _cap_per_class(ds.train, cfg.max_train_per_class)
    ds.val = _cap_per_class(ds.val, cfg.max_val_per_class)
    if cfg.max_train_per_class or cfg.max_val_per_class:
        ds.fingerprint += f"-subset{cfg.max_train_per_class}x{cfg.max_val_per_class}"
        ds.description += (f" (subset: at most {cfg.max_train_per_class or 'all'} train and "
                           f"{cfg.max_val_per_class or 'all'} {ds.val_name} images per class)")
    return ds


def _load_folder(cfg: DataConfig, root: Path, cache_dir: Path | None) -> Dataset:
    if not root.is_dir():
        raise UsageError(f"data folder {root} does not exist: pass --data DIR (ImageFolder layout)")
    train_dir = root / "train"
    val_dir = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if train_dir.is_dir() and val_dir is None:
        raise UsageError(f"{root} has train/ but no val/ or test/ folder: add one, or point --data at a single tree")
    if train_dir.is_dir():
        train_idx, val_idx = index_folder(train_dir), index_folder(val_dir)
        if train_idx.class_names != val_idx.class_names:
            raise UsageError(f"{train_dir} and {val_dir} have different class folders: make them the same")
        names = train_idx.class_names
        files = train_idx.files + val_idx.files
    else:
        train_idx = val_idx = index_folder(root)
        names, files = train_idx.class_names, train_idx.files
    from edgekd.data.sizing import describe, folder_preprocessing, preprocessing_key

    pre = folder_preprocessing(cfg, files, names)
    size = pre.input_size
    fp = fingerprint_files(files, root) + f"-{size[0]}x{size[1]}-{preprocessing_key(pre)}"
    if train_idx is val_idx:
        import numpy as np

        full = load_images(train_idx, pre, cache_dir, fp, strict=cfg.strict)
        keep, held = stratified_split(full.labels, cfg.val_fraction, cfg.split_seed)
        train, val, val_name = full.subset(keep), full.subset(held), f"held-out {cfg.val_fraction:.0%} (seed {cfg.split_seed})"
        fp += f"-split{cfg.split_seed}-{cfg.val_fraction}"
        skipped = full.skipped
        del np
    else:
        train = load_images(train_idx, pre, cache_dir, fp + "-train", strict=cfg.strict)
        val = load_images(val_idx, pre, cache_dir, fp + "-val", strict=cfg.strict)
        val_name = val_dir.name
        skipped = train.skipped + val.skipped
    desc = (f"{root} ({len(names)} classes, {len(train)} train / {len(val)} {val_name} images; "
            f"{describe(pre)})")
    notes = train_idx.notes + (val_idx.notes if val_idx is not train_idx else [])
    if skipped:
        more = " ..." if len(skipped) > 3 else ""
        desc += f"; skipped {len(skipped)} unreadable files: {'; '.join(skipped[:3])}{more}"
        fp += f"-skipped{len(skipped)}"
    if notes:
        desc += "; " + "; ".join(notes)
    return Dataset(train, val, pre, f"folder:{fp}", desc, val_name)
