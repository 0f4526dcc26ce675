"""Where images come from: an ImageFolder tree on disk, or the embedded sklearn digits.

Images are uint8 arrays (N, C, H, W) at the model's input size; normalisation happens per batch (see
`batches.py`), so the same raw values feed training, calibration, export checks and benchmarks.

A folder is decoded once, with threads, through edgekd.preprocess.load_image (the same function `edgekd eval`
and the bundle use) into a disk-backed uint8 memory map (`.npy` under the run's .cache, keyed by the data
fingerprint and every preprocessing step), written to a temporary name and renamed when complete. `Split.images`
is that memory map, so no step holds the whole dataset in RAM: batches read their rows, and the kernel keeps
or drops the file's pages as memory allows. Under torchrun one process decodes (a file lock) and the others
open its result. A subset (train/val carve, per-class caps) of a large memory map is written as its own memory
map beside it; small subsets (calibration sets) are plain arrays.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekd.errors import UsageError
from edgekd.fsio import publish, short_hash
from edgekd.paths import require_dir

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
IN_MEMORY_BYTES = 64 << 20  # subsets smaller than this are plain arrays, larger ones memory maps
SHOWN = 3  # paths listed in a warning or error about unreadable files
PREAD_MIN_ROW = 16 << 10  # rows at least this large are read with positioned reads; small ones through the map


@dataclass
class Split:
    """A labelled split: uint8 images (N, C, H, W), a numpy array or a read-only memory map, and int64 labels."""

    images: np.ndarray
    labels: np.ndarray
    skipped: list[str] = field(default_factory=list)  # unreadable files left out (relative paths and why)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, idx: np.ndarray) -> "Split":
        idx = np.asarray(idx)
        if isinstance(self.images, np.memmap) and len(idx) * row_bytes(self.images) > IN_MEMORY_BYTES:
            return Split(_memmap_rows(self.images, idx), self.labels[idx])
        return Split(np.asarray(self.images[idx]), self.labels[idx])


def row_bytes(images: np.ndarray) -> int:
    return int(np.prod(images.shape[1:])) * images.itemsize


def _memmap_rows(images: np.memmap, idx: np.ndarray, chunk: int = 2048) -> np.memmap:
    """images[idx] as a memory map beside `images` (rows copied a chunk at a time), reused when it exists."""
    src = Path(images.filename) if images.filename else None
    tag = short_hash(idx.astype(np.int64).tobytes())
    if src is None or not src.exists():
        return _fill_unlinked(images, idx, chunk)
    out = src.with_name(f"{src.stem}-rows{tag}.npy")
    if not out.is_file():
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        _copy_rows(images, idx, tmp, chunk)
        os.replace(tmp, out)
    return np.load(out, mmap_mode="c")


def _new_npy(path: Path, dtype, shape: tuple[int, ...]) -> tuple[int, int]:
    """Create a .npy of `shape` (header written, data a sparse hole): a write descriptor and the data offset."""
    header = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    offset = header.offset
    del header
    return os.open(path, os.O_WRONLY), offset


def _copy_rows(images: np.ndarray, idx: np.ndarray, path: Path, chunk: int = 2048) -> None:
    """Write images[idx] as a new .npy at `path`, a chunk at a time, with positioned reads and writes."""
    fd, offset = _new_npy(path, images.dtype, (len(idx), *images.shape[1:]))
    rb = row_bytes(images)
    try:
        for s in range(0, len(idx), chunk):
            os.pwrite(fd, np.ascontiguousarray(read_rows(images, idx[s:s + chunk])).data, offset + s * rb)
    finally:
        os.close(fd)


def _fill_unlinked(images: np.ndarray, idx: np.ndarray, chunk: int = 2048) -> np.memmap:
    dst = _scratch_memmap((len(idx), *images.shape[1:]), images.dtype)
    for s in range(0, len(idx), chunk):
        dst[s:s + chunk] = images[idx[s:s + chunk]]
    return dst


def _scratch_memmap(shape: tuple[int, ...], dtype) -> np.memmap:
    """A memory map on a file that is already unlinked: its disk space goes when the array does."""
    fd, name = tempfile.mkstemp(prefix="edgekd-images-", suffix=".npy")
    os.close(fd)
    try:
        return np.lib.format.open_memmap(name, mode="w+", dtype=dtype, shape=shape)
    finally:
        os.unlink(name)


@dataclass
class FolderIndex:
    root: Path
    class_names: list[str]
    files: list[Path]
    labels: list[int]
    notes: list[str] = field(default_factory=list)  # e.g. symlink loops left out


def _walk_images(folder: Path, notes: list[str]) -> list[Path]:
    """Image files under `folder`, following symlinked folders once each (a symlink loop is skipped)."""
    seen: set[tuple[int, int]] = set()
    out: list[Path] = []
    loops = 0
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True, onerror=lambda e: None):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            loops += 1
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            p = Path(dirpath) / name
            if p.suffix.lower() in IMAGE_EXTENSIONS and not name.startswith(".") and p.is_file():
                out.append(p)
    if loops:
        notes.append(f"{folder}: {loops} folder(s) reached twice through symbolic links (a loop) were read once")
    return sorted(out)


def index_folder(root: Path, min_classes: int = 2) -> FolderIndex:
    """List an ImageFolder tree (one sub-folder per class); classes sorted by name, as torchvision does.
    Training needs two classes at least; evaluating a bundle on one class's images is fine (min_classes=1)."""
    require_dir(root, "data folder", "a folder holding one sub-folder of images per class")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UsageError(f"data folder {root} has no class sub-folders: expected {root}/<class>/<image files>")
    if len(classes) == 1 and min_classes > 1:  # checked before any image is read or cached
        raise UsageError(f"data folder {root} has 1 class ({classes[0]}): a classifier needs at least 2; put the "
                         "images of each class in its own sub-folder")
    files: list[Path] = []
    labels: list[int] = []
    notes: list[str] = []
    for label, name in enumerate(classes):
        imgs = _walk_images(root / name, notes)
        if not imgs:
            raise UsageError(
                f"class folder {root / name} has no images ({', '.join(IMAGE_EXTENSIONS[:4])}, ...): "
                "add images or remove the folder")
        files.extend(imgs)
        labels.extend([label] * len(imgs))
    return FolderIndex(root, classes, files, labels, notes)


def file_fingerprints(files: list[Path], root: Path) -> tuple[str, str]:
    """Two content fingerprints from one stat of each file: (relative path, size and modification time; the same
    without the time). The first keys the image cache and the stage ids (an edited file reruns what read it); the
    second seeds the stages, so a copy of the same folder (new times: unzipped, cloned, `cp` without -p) trains
    the same."""
    stamped, unstamped = hashlib.sha256(), hashlib.sha256()
    for path in files:
        st = path.stat()
        line = f"{path.relative_to(root).as_posix()}\0{st.st_size}"
        stamped.update(f"{line}\0{st.st_mtime_ns}\n".encode())
        unstamped.update(f"{line}\n".encode())
    return stamped.hexdigest()[:16], unstamped.hexdigest()[:16]


def fingerprint_files(files: list[Path], root: Path) -> str:
    """Content fingerprint from each file's relative path, size and modification time (file_fingerprints)."""
    return file_fingerprints(files, root)[0]


@dataclass(frozen=True)
class Probe:
    """Header facts of a bounded, evenly spaced sample of a folder's files (no pixels decoded)."""

    sizes: list[tuple[int, int]]  # (height, width) as displayed (EXIF rotation applied)
    modes: list[str]
    unreadable: int
    example: str = ""  # the first unreadable file, for messages

    @property
    def channels(self) -> int:
        return 1 if self.modes and all(m in GREY_MODES for m in self.modes) else 3


def probe_images(files: list[Path], limit: int = 256) -> Probe:
    from PIL import Image

    picks = files if len(files) <= limit else [files[round(i * (len(files) - 1) / (limit - 1))] for i in range(limit)]
    sizes, modes, bad, example = [], [], 0, ""
    for path in picks:
        try:
            with Image.open(path) as img:
                w, h = img.size
                if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientation: rotated 90 degrees
                    w, h = h, w
                sizes.append((h, w))
                modes.append(img.mode)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is counted; decoding reports it in full
            bad += 1
            example = example or f"{path} ({type(exc).__name__})"
    return Probe(sizes, modes, bad, example)


def median_input_size(probe: Probe, cap: int) -> tuple[tuple[int, int], str]:
    """All sampled images the same size (within the cap): that size. Otherwise a square of the median
    shorter side, at most `cap`."""
    if not probe.sizes:
        raise UsageError(f"none of the {probe.unreadable} sampled image files could be read (e.g. {probe.example}): "
                         "check the data folder")
    distinct = set(probe.sizes)
    if len(distinct) == 1 and max(probe.sizes[0]) <= cap:
        h, w = probe.sizes[0]
        return (h, w), f"every sampled image is {h}x{w} ({len(probe.sizes)} sampled)"
    shorter = int(np.median([min(s) for s in probe.sizes]))
    side = min(shorter, cap)
    why = f"median shorter side {shorter} px of {len(probe.sizes)} sampled images"
    return (side, side), why + (f", capped at {cap}" if shorter > cap else "")


def _warn(message: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[yellow]warning:[/] {message}", markup=True)


def _cache_key(pre) -> str:
    from edgekd.preprocess_reference import FORMAT_VERSION

    facts = {"v": FORMAT_VERSION, "size": list(pre.input_size), "c": pre.channels, "r": pre.resize_shorter,
             "i": pre.interpolation, "e": pre.exif_transpose, "bg": list(pre.alpha_background)}
    return short_hash(json.dumps(facts, sort_keys=True), 10)


def load_images(index: FolderIndex, pre, cache_dir: Path | None, fingerprint: str, *, strict: bool = False,
                workers: int | None = None) -> Split:
    """Decode every file once (threads) into a uint8 memory map; see the module docstring.

    Unreadable files (corrupt, not an image, over Pillow's decompression-bomb limit) are left out with a
    warning naming the count and the first few; `strict` makes them an error. All unreadable: an error.
    """
    shape = (pre.channels, *pre.input_size)
    if cache_dir is None:
        return _decode_all(index, pre, None, shape, strict, workers)
    created = [p for p in (cache_dir, *cache_dir.parents) if not p.exists()]
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / f"images-{fingerprint}-{_cache_key(pre)}.npy"
    import fcntl

    with open(final.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # torchrun: the first rank decodes, the others wait and open its file
        if not final.is_file():
            try:
                _decode_all(index, pre, final, shape, strict, workers)
            except UsageError:
                _undo_cache_dirs(final.with_suffix(".lock"), created)
                raise
    meta = json.loads(final.with_suffix(".json").read_text())
    labels = np.load(final.with_suffix(".labels.npy"))
    _report_skipped(meta["skipped"], len(index.files), strict)
    return Split(np.load(final, mmap_mode="c"), labels, meta["skipped"])


def _undo_cache_dirs(lock: Path, created: list[Path]) -> None:
    """Bad data (e.g. --strict-data and an unreadable file) leaves no trace: the lock file and the folders this
    call created are removed again. Not under torchrun, where another rank may be waiting on that lock."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return
    lock.unlink(missing_ok=True)
    for folder in created:  # innermost first
        try:
            folder.rmdir()
        except OSError:
            break


def _decode_all(index: FolderIndex, pre, final: Path | None, shape, strict: bool, workers: int | None) -> Split:
    """Decode into `final` (renamed into place when complete), or into a scratch file unlinked once mapped."""
    n = len(index.files)
    where = final.parent if final is not None else Path(tempfile.gettempdir())
    tmp = where / f".{final.name if final is not None else 'edgekd-images.npy'}.tmp-{os.getpid()}-{id(index)}"
    try:
        errors = _decode_into(tmp, index, pre, (n, *shape), workers)
        bad = [i for i, e in enumerate(errors) if e is not None]
        skipped = [errors[i] for i in bad]
        labels = np.asarray(index.labels, dtype=np.int64)
        _report_skipped(skipped, n, strict, warn=False)
        _check_classes(labels, bad, index)
        if bad:
            keep = np.setdiff1d(np.arange(n), bad)
            part = tmp.with_name(tmp.name + ".kept")
            _copy_rows(np.load(tmp, mmap_mode="r"), keep, part)
            os.replace(part, tmp)
            labels = labels[keep]
        if final is None:
            images = np.load(tmp, mmap_mode="c")
            _report_skipped(skipped, n, strict)
            return Split(images, labels, skipped)
        np.save(final.with_suffix(".labels.npy"), labels)
        final.with_suffix(".json").write_text(json.dumps({"skipped": skipped, "files": n}))
        publish(tmp, final)  # last, durably: a complete .npy means labels and notes are there too
        return Split(np.load(final, mmap_mode="c"), labels, skipped)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".kept").unlink(missing_ok=True)


def _decode_into(path: Path, index: FolderIndex, pre, shape: tuple[int, ...], workers: int | None) -> list:
    """Decode file i into row i of a new .npy at `path` with positioned writes (threads; no pages of the
    store are mapped into this process while it is written). Returns, per file, None or why it failed."""
    from edgekd.preprocess import load_image

    fd, offset = _new_npy(path, np.uint8, shape)
    rb = int(np.prod(shape[1:]))

    def work(i: int) -> str | None:
        try:
            arr = np.ascontiguousarray(load_image(index.files[i], pre), dtype=np.uint8)
            if arr.shape != shape[1:]:
                raise ValueError(f"decoded to {arr.shape}, expected {shape[1:]}")
            os.pwrite(fd, arr.data, offset + i * rb)
            return None
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad files; each is listed
            why = str(exc).splitlines()[0][:120] if str(exc) else ""
            name = index.files[i].relative_to(index.root).as_posix()
            return f"{name} ({type(exc).__name__}{': ' + why if why else ''})"

    try:
        with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
            return list(pool.map(work, range(shape[0])))
    finally:
        os.close(fd)


def read_rows(images: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """images[idx] as a new array. Rows (of PREAD_MIN_ROW bytes or more, e.g. a 224x224 photo) of a whole-file
    memory map are read with positioned reads in file order: the kernel's page cache keeps them and this
    process's resident memory does not grow with the epoch. Small rows (CIFAR's 3 KB) are copied through the
    map, where one system call per row would cost more than the copy."""
    idx = np.asarray(idx)
    path = images.filename if isinstance(images, np.memmap) else None
    rb = row_bytes(images)
    if rb < PREAD_MIN_ROW or not path or not os.path.exists(path) or not images.flags.c_contiguous or \
            (os.path.getsize(path) - images.offset) // rb != images.shape[0]:  # a view, or not a file any more
        return np.asarray(images[idx])
    out = np.empty((len(idx), *images.shape[1:]), images.dtype)
    flat = out.reshape(len(idx), -1).view(np.uint8)
    fd = os.open(path, os.O_RDONLY)
    try:
        for k in np.argsort(idx, kind="stable"):
            os.preadv(fd, [flat[k]], images.offset + int(idx[k]) * rb)
    finally:
        os.close(fd)
    return out


def _report_skipped(skipped: list[str], total: int, strict: bool, warn: bool = True) -> None:
    if not skipped:
        return
    shown = "; ".join(skipped[:SHOWN]) + (f"; ... ({len(skipped) - SHOWN} more)" if len(skipped) > SHOWN else "")
    if len(skipped) == total:
        raise UsageError(f"none of the {total} image files could be read (e.g. {shown}): check the data folder")
    if strict:
        raise UsageError(f"{len(skipped)} of {total} image files are unreadable ({shown}); remove or replace "
                         "them, or drop --strict-data to skip them")
    if warn:
        _warn(f"skipped {len(skipped)} of {total} unreadable image files: {shown}")


def _check_classes(labels: np.ndarray, bad: list[int], index: FolderIndex) -> None:
    left = np.bincount(np.delete(labels, bad), minlength=len(index.class_names))
    empty = [index.class_names[c] for c in np.flatnonzero(left == 0)]
    if empty:
        raise UsageError(f"class folder {index.root / empty[0]} has no readable images: add images or remove it")


def load_digits() -> tuple[Split, list[str], str]:
    """sklearn's bundled digits (1,797 real 8x8 handwritten digits, values 0..16), all of them: the roles are
    carved out in edgekd.data.dataset like any single tree."""
    from sklearn.datasets import load_digits as sk_digits

    digits = sk_digits()
    images = digits.images.astype(np.uint8)[:, None]  # (N, 1, 8, 8), 0..16
    labels = digits.target.astype(np.int64)
    fp = short_hash(images.tobytes() + labels.tobytes(), 16)
    return Split(images, labels), [str(i) for i in range(10)], fp
