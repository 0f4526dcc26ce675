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


def write_eval_set(path, images: np.ndarray, labels: np.ndarray, pre: Preprocessing) -> None:
    """The held-out split as raw uint8 + labels, so `edgekd bench` can measure accuracy on a device."""
    np.savez_compressed(path, images=images, labels=labels, preprocessing=pre.model_dump_json())


def read_eval_set(path) -> tuple[np.ndarray, np.ndarray, Preprocessing]:
    with np.load(path, allow_pickle=False) as z:
        return z["images"], z["labels"], Preprocessing.model_validate_json(str(z["preprocessing"]))
