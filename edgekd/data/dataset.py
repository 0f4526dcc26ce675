"""Dataset configuration and loading: the one place that turns `--data` into the train / val / test roles
(edgekd/data/roles.py says which layout gives which role)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgekd.data.roles import ROLES, carve, check_same_classes, folder_layout, pct, role_facts, roles_line
from edgekd.data.sources import Split, file_fingerprints, index_folder, load_digits, load_images
from edgekd.errors import UsageError
from edgekd.manifest import Preprocessing
from edgekd.paths import require_dir

DIGITS = "digits"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class DataConfig(BaseModel):
    """`source` is 'digits' (embedded default) or a folder: train/ with val/ and/or test/ inside, or one
    ImageFolder tree. `val_fraction` of train/ (or of the single tree) is carved out as val when no val/ is
    given beside a test/; `test_fraction` of a single tree is carved out as test."""

    model_config = ConfigDict(extra="forbid")

    source: str = DIGITS
    split_seed: int = 0
    val_fraction: float = Field(default=0.1, gt=0, lt=1)
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    input_size: tuple[int, int] | None = None  # None: from the data (edgekd.data.sizing)
    mean: list[float] | None = None  # None: ImageNet statistics for RGB, 0.5 for grayscale
    std: list[float] | None = None
    max_train_per_class: int | None = Field(default=None, ge=1)  # a subset, said in every report
    max_val_per_class: int | None = Field(default=None, ge=1)
    max_test_per_class: int | None = Field(default=None, ge=1)
    # preprocessing choices (edgekd.data.sizing): None lets the data / defaults decide
    resize_shorter: int | None = Field(default=None, ge=1)
    interpolation: Literal["nearest", "bilinear", "bicubic", "lanczos"] | None = None
    size_source: str | None = None  # why input_size was given (--input-size, target, teacher weights)
    size_cap: int = Field(default=224, ge=1)
    strict: bool = False  # unreadable image files are an error instead of skipped with a warning


@dataclass
class Dataset:
    """train fits weights, val makes every decision, test is the only reported and judged figure."""

    train: Split
    val: Split
    test: Split
    preprocessing: Preprocessing
    fingerprint: str
    description: str
    origins: dict[str, str]  # role -> where its images come from ("given test/", "carved 10% of train/ ...")
    # what seeds the stages (edgekd.pipeline): the fingerprint without the files' modification times; "" = the same
    seed_fingerprint: str = ""

    def seed_key(self) -> str:
        return self.seed_fingerprint or self.fingerprint

    @property
    def num_classes(self) -> int:
        return len(self.preprocessing.class_names)

    def split(self, role: str) -> Split:
        return {"train": self.train, "val": self.val, "test": self.test}[role]

    def facts(self, role: str) -> dict:
        """What a manifest records about the split a stage used: its role, image count and origin."""
        return {"split": role, **role_facts(len(self.split(role)), self.origins[role])}

    def splits(self) -> dict[str, dict]:
        return {r: role_facts(len(self.split(r)), self.origins[r]) for r in ROLES}

    def roles_line(self) -> str:
        return roles_line(self.splits())


class DataLoader:
    """`--data` loaded once (call it), and, for a student at a smaller input size, the same images decoded at that
    size (`at_size`: same files, same roles in the same order, each size cached once)."""

    def __init__(self, cfg: DataConfig, cache_dir: Path | None = None) -> None:
        self.cfg, self.cache_dir = cfg, cache_dir
        self._loaded: dict[tuple, Dataset] = {}

    def __call__(self) -> Dataset:
        if () not in self._loaded:
            self._loaded[()] = load_data(self.cfg, self.cache_dir)
        return self._loaded[()]

    def at_size(self, pre: Preprocessing) -> Dataset:
        """The data decoded with `pre`'s input size and resize (edgekd.search.resolution.at_size)."""
        base = self()
        if tuple(pre.input_size) == tuple(base.preprocessing.input_size):
            return base
        if base.preprocessing.source != "image_file":
            raise UsageError(f"{base.description} is given as arrays: it has no other input size than "
                             f"{base.preprocessing.input_size[0]}x{base.preprocessing.input_size[1]}")
        key = (tuple(pre.input_size), pre.resize_shorter)
        if key not in self._loaded:
            cfg = self.cfg.model_copy(update={"input_size": tuple(pre.input_size), "resize_shorter": pre.resize_shorter,
                                              "size_source": pre.size_source, "interpolation": pre.interpolation})
            data = load_data(cfg, self.cache_dir)
            if len(data.train) != len(base.train) or len(data.test) != len(base.test) or \
                    len(data.val) != len(base.val):
                raise UsageError(f"--data decoded at {key[0][0]}x{key[0][1]} has other images than at the data's size "
                                 "(a file changed or became unreadable during the run): run again")
            self._loaded[key] = data
        return self._loaded[key]


def _cap_per_class(split: Split, cap: int | None) -> Split:
    if cap is None:
        return split
    idx = np.concatenate([np.flatnonzero(split.labels == c)[:cap] for c in np.unique(split.labels)])
    return split.subset(np.sort(idx))


def _carve_tree(cfg: DataConfig, labels: np.ndarray, names: list[str], where: str) -> tuple[dict, dict[str, str]]:
    """A single tree (or the digits) into test, val and train indices; their origins."""
    parts = carve(labels, {"test": cfg.test_fraction, "val": cfg.val_fraction}, cfg.split_seed, names, where)
    how = f"(stratified, seed {cfg.split_seed})"
    origins = {"test": f"carved {pct(cfg.test_fraction)} of {where} {how}",
               "val": f"carved {pct(cfg.val_fraction)} of {where} {how}",
               "train": f"the rest of {where}"}
    return parts, origins


def _split_tag(cfg: DataConfig, *fractions: float) -> str:
    """Fingerprint suffix of a carve: a changed seed or fraction is different data for every stage."""
    return f"-roles{cfg.split_seed}-" + "-".join(f"{f:g}" for f in fractions)


def load_data(cfg: DataConfig, cache_dir: Path | None = None) -> Dataset:
    if cfg.source == DIGITS:
        full, names, fp = load_digits()
        pre = Preprocessing(input_size=(8, 8), channels=1, mean=cfg.mean or [0.5], std=cfg.std or [0.5],
                            value_scale=16.0, resize_shorter=None, exif_transpose=False, source="array",
                            size_source="sklearn digits arrays", channel_order="GRAY", class_names=names)
        carved, origins = _carve_tree(cfg, full.labels, names, "sklearn digits")
        parts = {role: full.subset(idx) for role, idx in carved.items()}
        fp += _split_tag(cfg, cfg.test_fraction, cfg.val_fraction)
        ds = Dataset(parts["train"], parts["val"], parts["test"], pre, f"digits:{fp}",
                     "sklearn digits (1,797 8x8 images)", origins)
    else:
        ds = _load_folder(cfg, Path(cfg.source), cache_dir)
    caps = {"train": cfg.max_train_per_class, "val": cfg.max_val_per_class, "test": cfg.max_test_per_class}
    for role, cap in caps.items():
        setattr(ds, role, _cap_per_class(ds.split(role), cap))
    if any(caps.values()):
        tag = "-subset" + "x".join(str(c) for c in caps.values())
        ds.fingerprint += tag
        ds.seed_fingerprint += tag if ds.seed_fingerprint else ""
        ds.description += " (subset: at most " + ", ".join(
            f"{c or 'all'} {r}" for r, c in caps.items()) + " images per class)"
        for role, cap in caps.items():
            if cap:
                ds.origins[role] += f", at most {cap} per class"
    return ds


def _index(root: Path):
    """The folder's layout, per-role indexes, class names and files (no image is decoded)."""
    require_dir(root, "--data", "a folder of images (ImageFolder layout: one sub-folder per class, or train/, "
                "val/ and test/ trees)")
    layout = folder_layout(root)
    indexes = {role: index_folder(folder) for role, folder in layout.items()} or {"tree": index_folder(root)}
    check_same_classes(indexes)
    names = next(iter(indexes.values())).class_names
    return layout, indexes, names, [f for idx in indexes.values() for f in idx.files]


def planned_preprocessing(cfg: DataConfig) -> Preprocessing | None:
    """The Preprocessing a folder would be loaded with (from the file index and a sample of headers; nothing
    decoded), so a choice that changes the input size is made before the images are decoded; None for the
    digits."""
    if cfg.source == DIGITS:
        return None
    from edgekd.data.sizing import folder_preprocessing

    _, _, names, files = _index(Path(cfg.source))
    return folder_preprocessing(cfg, files, names)


def _load_folder(cfg: DataConfig, root: Path, cache_dir: Path | None) -> Dataset:
    layout, indexes, names, files = _index(root)
    from edgekd.data.sizing import describe, folder_preprocessing, preprocessing_key

    pre = folder_preprocessing(cfg, files, names)
    stamped, unstamped = file_fingerprints(files, root)
    fp = stamped + f"-{pre.input_size[0]}x{pre.input_size[1]}-{preprocessing_key(pre)}"
    # a class too small for the carve fails on the folder index, before any decoding; the carve itself is made
    # on the decoded labels (unreadable files are skipped, so the rows may be fewer than the files)
    if not layout:  # one tree: test and val carved out of it
        _carve_tree(cfg, np.asarray(indexes["tree"].labels), names, f"{root.name}/")
        full = load_images(indexes["tree"], pre, cache_dir, fp, strict=cfg.strict)
        carved, origins = _carve_tree(cfg, full.labels, names, f"{root.name}/")
        parts = {role: full.subset(idx) for role, idx in carved.items()}
        skipped = list(full.skipped)
        fp += _split_tag(cfg, cfg.test_fraction, cfg.val_fraction)
    else:
        origins = {role: f"given {layout[role].name}/" for role in layout}
        if "val" not in layout:  # a lone test/ (or val/) beside train/: val is carved out of train/
            carve(np.asarray(indexes["train"].labels), {"val": cfg.val_fraction}, cfg.split_seed, names, "train/")
        parts = {role: load_images(idx, pre, cache_dir, fp + f"-{layout[role].name}", strict=cfg.strict)
                 for role, idx in indexes.items()}
        skipped = [f for part in parts.values() for f in part.skipped]
        if "val" not in layout:
            given_train = parts["train"]
            carved = carve(given_train.labels, {"val": cfg.val_fraction}, cfg.split_seed, names, "train/")
            parts["val"], parts["train"] = given_train.subset(carved["val"]), given_train.subset(carved["train"])
            origins["val"] = f"carved {pct(cfg.val_fraction)} of train/ (stratified, seed {cfg.split_seed})"
            origins["train"] = "train/ less the val images"
            fp += _split_tag(cfg, cfg.val_fraction)
        if layout["test"].name == "val":
            origins["test"] = "given val/ (the test role: nothing is selected on it)"
    desc = f"{root} ({len(names)} classes; {describe(pre)})"
    notes = [n for idx in indexes.values() for n in idx.notes]
    if skipped:
        more = " ..." if len(skipped) > 3 else ""
        desc += f"; skipped {len(skipped)} unreadable files: {'; '.join(skipped[:3])}{more}"
        fp += f"-skipped{len(skipped)}"
    if notes:
        desc += "; " + "; ".join(notes)
    seed = unstamped + fp[len(stamped):]
    return Dataset(parts["train"], parts["val"], parts["test"], pre, f"folder:{fp}", desc, origins, f"folder:{seed}")
