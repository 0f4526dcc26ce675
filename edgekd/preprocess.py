"""Preprocessing in numpy + Pillow (no torch): what a device applies to an image file before the model.

The steps themselves live in edgekd/preprocess_reference.py (standalone: the bundle ships it verbatim as
preprocess.py); this module adapts them to edgekd's records and files.
"""

from __future__ import annotations

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


def write_eval_set(path, images: np.ndarray, labels: np.ndarray, pre: Preprocessing) -> None:
    """The held-out split as raw uint8 + labels, so `edgekd bench` can measure accuracy on a device."""
    np.savez_compressed(path, images=images, labels=labels, preprocessing=pre.model_dump_json())


def read_eval_set(path) -> tuple[np.ndarray, np.ndarray, Preprocessing]:
    with np.load(path, allow_pickle=False) as z:
        return z["images"], z["labels"], Preprocessing.model_validate_json(str(z["preprocessing"]))
