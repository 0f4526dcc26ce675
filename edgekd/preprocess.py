"""Preprocessing in numpy + Pillow (no torch): what a device applies to an image file before the model.

The steps themselves live in edgekd/preprocess_reference.py (standalone: the bundle ships it verbatim as
preprocess.py); this module adapts them to edgekd's records and files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgekd import preprocess_reference as reference
from edgekd.manifest import Preprocessing

load_image = reference.load_image  # path, Preprocessing -> uint8 (C, H, W): training, eval and bundle use it
REFERENCE_SOURCE = Path(reference.__file__)


def normalize_np(images: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """Raw images (N, C, H, W) at the model's input size -> float32 model input, as `pre` says."""
    return reference.normalize(images, pre)


class NormalizedImages:
    """Raw images (N, C, H, W) seen as float32 model input, normalised a slice at a time on access: a test
    split of 20,000 photos at 224 px is 3 GB as uint8 and 12 GB as float32, so the float copy is never made
    whole. Supports len(), `.shape`, and indexing by a slice or an index array (the rows are read from the
    source, which may be a memory map)."""

    def __init__(self, images: np.ndarray, pre: Preprocessing) -> None:
        self.images, self.pre = images, pre

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape)

    def __getitem__(self, key) -> np.ndarray:
        return normalize_np(np.asarray(self.images[key]), self.pre)


EVAL_SET_SEED = 0  # fixed: the same test split gives the same eval-set sample on every run and machine


def eval_sample(labels: np.ndarray, size: int, class_names: list[str] | None = None,
                seed: int = EVAL_SET_SEED) -> tuple[np.ndarray, dict]:
    """Rows of a held-out split to ship as the eval set, and how they were drawn.

    At most `size` rows (0, or a size at least the split's: every row), stratified: each class keeps its share of
    the split (largest-remainder rounding, so the counts add up to `size` exactly), drawn without replacement with
    numpy's default_rng(`seed`) and returned in split order. Same labels, size and seed: the same rows.
    """
    labels = np.asarray(labels)
    total = len(labels)
    classes = np.unique(labels)
    if size <= 0 or size >= total:
        idx = np.arange(total, dtype=np.int64)
        method = "the whole test split"
    else:
        counts = np.array([(labels == c).sum() for c in classes])
        share = counts * size / total
        take = np.floor(share).astype(int)
        order = np.argsort(-(share - take), kind="stable")  # largest remainders first, ties by class order
        take[order[:size - take.sum()]] += 1
        rng = np.random.default_rng(seed)
        idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), k, replace=False)
                                      for c, k in zip(classes, take)])).astype(np.int64)
        method = (f"stratified sample: each class keeps its share of the test split (largest-remainder rounding), "
                  f"drawn without replacement with numpy default_rng({seed})")
    names = class_names or [str(c) for c in range(int(classes.max()) + 1 if len(classes) else 0)]
    per_class = {names[int(c)]: int((labels[idx] == c).sum()) for c in classes}
    facts = {"images": int(len(idx)), "of": int(total), "split": "test", "cap": int(size), "seed": seed,
             "method": method, "per_class": per_class}
    return idx, facts


def sample_text(facts: dict | None) -> str:
    """'2,000 of 10,000 test images (stratified sample, seed 0)', or the whole split; '' when not recorded."""
    if not facts:
        return ""
    if facts["images"] >= facts["of"]:
        return f"all {facts['of']:,} images of the {facts['split']} split"
    return (f"a sample of {facts['images']:,} of the {facts['of']:,} {facts['split']} images (stratified by class, "
            f"seed {facts['seed']}), not the full {facts['split']} split")


def write_eval_set(path, images: np.ndarray, labels: np.ndarray, pre: Preprocessing,
                   sample: dict | None = None, indices: np.ndarray | None = None) -> None:
    """The held-out images as raw uint8 + labels, so `edgekd bench` can measure accuracy on a device; `sample`
    (edgekd.preprocess.eval_sample's facts) and `indices` (rows of the split) say which images these are."""
    extra = {} if sample is None else {"sample": json.dumps(sample)}
    if indices is not None:
        extra["indices"] = np.asarray(indices, dtype=np.int64)
    np.savez_compressed(path, images=images, labels=labels, preprocessing=pre.model_dump_json(), **extra)


def read_eval_set(path) -> tuple[np.ndarray, np.ndarray, Preprocessing]:
    with np.load(path, allow_pickle=False) as z:
        return z["images"], z["labels"], Preprocessing.model_validate_json(str(z["preprocessing"]))


def read_eval_sample(path) -> dict | None:
    """How an eval_set.npz was drawn (eval_sample's facts); None for one written before this was recorded."""
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["sample"])) if "sample" in z.files else None
