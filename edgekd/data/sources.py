"""Where images come from: an ImageFolder tree on disk, or the embedded sklearn digits.

Images are kept as uint8 tensors (N, C, H, W) at the model's input size; normalisation happens per batch
(see `batches.py`), so the same raw values feed training, calibration, export checks and benchmarks.
Small datasets are decoded once and held in memory (CIFAR-10's 50,000 32x32 images are 150 MB), with a
cache file keyed by the data fingerprint so a second run does not decode again.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.errors import UsageError
from edgekd.fsio import publish
from edgekd.paths import require_dir

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


@dataclass
class Split:
    """A labelled split held in memory: uint8 images (N, C, H, W) and int64 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, idx: np.ndarray) -> "Split":
        return Split(self.images[idx], self.labels[idx])


@dataclass
class FolderIndex:
    root: Path
    class_names: list[str]
    files: list[Path]
    labels: list[int]


def index_folder(root: Path) -> FolderIndex:
    """List an ImageFolder tree (one sub-folder per class); classes sorted by name, as torchvision does."""
    require_dir(root, "data folder", "a folder holding one sub-folder of images per class")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UsageError(f"data folder {root} has no class sub-folders: expected {root}/<class>/<image files>")
    if len(classes) == 1:  # checked before any image is read or cached
        raise UsageError(f"data folder {root} has 1 class ({classes[0]}): a classifier needs at least 2; put the "
                         "images of each class in its own sub-folder")
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        imgs = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not imgs:
            raise UsageError(
                f"class folder {root / name} has no images ({', '.join(IMAGE_EXTENSIONS[:4])}, ...): "
                "add images or remove the folder")
        files.extend(imgs)
        labels.extend([label] * len(imgs))
    return FolderIndex(root, classes, files, labels)


def fingerprint_files(files: list[Path], root: Path) -> str:
    """Content fingerprint from each file's relative path, size and modification time."""
    h = hashlib.sha256()
    for path in files:
        st = path.stat()
        h.update(f"{path.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _decode(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB" if channels == 3 else "L")
            if img.size != (size[1], size[0]):
                img = _resize_center_crop(img, size)
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise UsageError(f"cannot read image {path}: {exc.__class__.__name__}; remove or replace the file") from None
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def _resize_center_crop(img, size: tuple[int, int]):
    from PIL import Image

    h, w = size
    scale = max(h / img.height, w / img.width)
    img = img.resize((max(w, round(img.width * scale)), max(h, round(img.height * scale))), Image.BILINEAR)
    left, top = (img.width - w) // 2, (img.height - h) // 2
    return img.crop((left, top, left + w, top + h))


def probe_image(path: Path) -> tuple[tuple[int, int], int]:
    """(height, width) and channel count of one image, to pick the input size when nothing pins it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return (img.height, img.width), (1 if img.mode in ("L", "I", "I;16", "1") else 3)
    except (UnidentifiedImageError, OSError) as exc:
        raise UsageError(f"cannot read image {path}: {exc.__class__.__name__}; remove or replace the file") from None


def load_images(index: FolderIndex, size: tuple[int, int], channels: int, cache_dir: Path | None,
                fingerprint: str, workers: int = 4) -> Split:
    """Decode every image once (threads), cached as .npz under cache_dir keyed by fingerprint and size."""
    cache = None
    if cache_dir is not None:
        cache = cache_dir / f"images-{fingerprint}-{size[0]}x{size[1]}x{channels}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                return Split(z["images"], z["labels"])
    with ThreadPoolExecutor(max_workers=workers) as pool:
        arrays = list(pool.map(lambda p: _decode(p, size, channels), index.files, chunksize=64))
    split = Split(np.stack(arrays), np.asarray(index.labels, dtype=np.int64))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp.npz")  # per process: torchrun ranks load at once
        np.savez(tmp, images=split.images, labels=split.labels)
        publish(tmp, cache)
    return split


def load_digits() -> tuple[Split, list[str], str]:
    """sklearn's bundled digits (1,797 real 8x8 handwritten digits, values 0..16), all of them: the roles are
    carved out in edgekd.data.dataset like any single tree."""
    from sklearn.datasets import load_digits as sk_digits

    digits = sk_digits()
    images = digits.images.astype(np.uint8)[:, None]  # (N, 1, 8, 8), 0..16
    labels = digits.target.astype(np.int64)
    fp = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()[:16]
    return Split(images, labels), [str(i) for i in range(10)], fp
