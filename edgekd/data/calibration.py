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


def class_quotas(counts: np.ndarray, size: int) -> np.ndarray:
    """Images per class for a stratified sample of exactly `size` (<= counts.sum()) images.

    Each class gets the floor of its proportional share, and at least one image when `size` allows every class
    one; the images left over go one each to the classes with the largest fractional remainder (largest
    remainder method; ties to the lower class index), never beyond a class's count. Deterministic.
    """
    share = counts / counts.sum() * size
    quota = np.minimum(np.floor(share).astype(int), counts)
    if size >= len(counts):
        quota = np.maximum(quota, 1)
    while quota.sum() > size:  # the one-per-class minimum overshot: take from the most over-served class
        over = np.where(quota > 1, quota - share, -np.inf)
        quota[int(np.argmax(over))] -= 1
    while quota.sum() < size:
        room = np.where(quota < counts, share - quota, -np.inf)
        quota[int(np.argmax(room))] += 1
    return quota


def sample_calibration(train: Split, size: int, seed: int) -> Split:
    """A stratified sample of exactly `size` training images (every class in proportion, see
    :func:`class_quotas`); the whole split when it holds no more than `size`."""
    if size >= len(train):
        return train
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(train.labels, return_counts=True)
    quota = class_quotas(counts, size)
    picked = [rng.choice(np.flatnonzero(train.labels == c), size=q, replace=False)
              for c, q in zip(classes, quota) if q > 0]
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
