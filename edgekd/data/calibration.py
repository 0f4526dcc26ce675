"""Calibration sets for quantization: stratified from the training split, written as .npz.

Format (also documented in calib_data/README.md): `images` uint8 (N, C, H, W) raw pixels at the model's
input size, `labels` int64 (N,), `class_names` str (K,), `preprocessing` a JSON string of the
Preprocessing record. A user-provided set in the same format can be passed with --calib FILE.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgekd.data.sources import Split
from edgekd.errors import UsageError
from edgekd.manifest import Preprocessing


def sample_calibration(train: Split, size: int, seed: int) -> Split:
    """A stratified sample of `size` training images (every class in proportion; all if fewer)."""
    if size >= len(train):
        return train
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(train.labels, return_counts=True)
    quota = np.maximum(1, np.floor(counts / counts.sum() * size).astype(int))
    picked = [rng.choice(np.flatnonzero(train.labels == c), size=min(q, cnt), replace=False)
              for c, q, cnt in zip(classes, quota, counts)]
    return train.subset(np.sort(np.concatenate(picked)))


def write_calibration(path: Path, split: Split, pre: Preprocessing) -> None:
    np.savez_compressed(path, images=split.images, labels=split.labels,
                        class_names=np.asarray(pre.class_names), preprocessing=pre.model_dump_json())


def read_calibration(path: Path, pre: Preprocessing) -> Split:
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"]
            stored = Preprocessing.model_validate(json.loads(str(z["preprocessing"])))
    except (OSError, KeyError, ValueError) as exc:
        raise UsageError(f"calibration file {path} is not an edgekd calibration set ({exc}); "
                         "see calib_data/README.md for the format") from None
    if images.dtype != np.uint8 or images.ndim != 4:
        raise UsageError(f"calibration file {path}: images must be uint8 (N, C, H, W), got {images.dtype} {images.shape}")
    if (tuple(stored.input_size), stored.channels) != (tuple(pre.input_size), pre.channels):
        raise UsageError(f"calibration file {path} holds {stored.channels}x{stored.input_size} images, "
                         f"the model takes {pre.channels}x{tuple(pre.input_size)}")
    return Split(images, labels)
