"""Folder data at scale and with bad files: memory-mapped store, unreadable files, bombs, symlink loops."""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import edgekd.data.sources as sources
from edgekd.data.dataset import DataConfig, load_data
from edgekd.errors import UsageError


def _tree(root, classes=("a", "b"), n=6, size=(16, 20)):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


def _bomb_png(path, side=20000):
    """A PNG whose header claims side x side pixels (over Pillow's decompression-bomb limit), a few bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) +
                     chunk(b"IEND", b""))


def test_images_are_a_disk_backed_memory_map_reused_from_the_cache(tmp_path, monkeypatch):
    _tree(tmp_path / "d" / "train")
    _tree(tmp_path / "d" / "val", n=3)
    cfg = DataConfig(source=str(tmp_path / "d"))
    first = load_data(cfg, tmp_path / "cache")
    # the given val/ is the test role, a whole store; train/ is carved into train and val (small: in memory)
    assert isinstance(first.test.images, np.memmap) and first.test.images.shape[1:] == (3, 16, 20)
    assert len(first.train) + len(first.val) == 12
    monkeypatch.setattr("edgekd.preprocess.load_image", lambda *a: (_ for _ in ()).throw(AssertionError("decoded")))
    again = load_data(cfg, tmp_path / "cache")  # from the store: nothing decoded
    np.testing.assert_array_equal(first.train.images, again.train.images)
    np.testing.assert_array_equal(first.test.images, again.test.images)
    assert first.fingerprint == again.fingerprint


def test_large_subsets_stay_on_disk_small_ones_in_memory(tmp_path, monkeypatch):
    _tree(tmp_path / "d", n=10)
    monkeypatch.setattr(sources, "IN_MEMORY_BYTES", 1000)
    ds = load_data(DataConfig(source=str(tmp_path / "d")), tmp_path / "cache")
    assert isinstance(ds.train.images, np.memmap) and isinstance(ds.val.images, np.memmap)
    assert ds.train.images.filename and "-rows" in os.path.basename(ds.train.images.filename)
    small = ds.train.subset(np.arange(1))
    assert not isinstance(small.images, np.memmap)
    np.testing.assert_array_equal(small.images[0], ds.train.images[0])


def test_unreadable_files_are_skipped_listed_and_fingerprinted(tmp_path, capsys):
    _tree(tmp_path / "d")
    (tmp_path / "d" / "a" / "broken.jpg").write_bytes(b"not an image")
    _bomb_png(tmp_path / "d" / "b" / "huge.png")
    ds = load_data(DataConfig(source=str(tmp_path / "d")), tmp_path / "cache")
    assert len(ds.train) + len(ds.val) + len(ds.test) == 12
    assert "skipped 2 unreadable files" in ds.description and "broken.jpg" in ds.description
    assert "huge.png (DecompressionBombError" in ds.description
    assert "skipped 2 of 14 unreadable image files" in capsys.readouterr().err


def test_strict_data_makes_unreadable_files_an_error(tmp_path):
    _tree(tmp_path / "d")
    _bomb_png(tmp_path / "d" / "b" / "huge.png")
    with pytest.raises(UsageError, match=r"1 of 13 image files are unreadable \(b/huge.png"):
        load_data(DataConfig(source=str(tmp_path / "d"), strict=True), tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.npy"))  # nothing half-written is left as a store


def test_a_class_with_only_unreadable_files_is_an_error(tmp_path):
    _tree(tmp_path / "d")
    (tmp_path / "d" / "c").mkdir()
    for i in range(6):  # enough files for the train/val/test carve, none of them readable
        (tmp_path / "d" / "c" / f"x{i}.jpg").write_bytes(b"junk")
    with pytest.raises(UsageError, match="c has no readable images"):
        load_data(DataConfig(source=str(tmp_path / "d")))


def test_symlink_loop_does_not_hang(tmp_path):
    _tree(tmp_path / "d")
    os.symlink(tmp_path / "d" / "a", tmp_path / "d" / "a" / "loop")  # a -> a/loop -> a ...
    os.symlink(tmp_path / "d" / "nowhere", tmp_path / "d" / "b" / "dangling.png")
    ds = load_data(DataConfig(source=str(tmp_path / "d")))
    assert len(ds.train) + len(ds.val) + len(ds.test) == 12 and "symbolic links (a loop)" in ds.description


def test_input_size_from_data_median_and_pinned(tmp_path):
    _tree(tmp_path / "d", n=3, size=(40, 60))
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "d" / "a" / "0first.png")  # first file: tiny
    ds = load_data(DataConfig(source=str(tmp_path / "d")))
    assert ds.preprocessing.input_size == (40, 40) and ds.preprocessing.resize_shorter == 40
    assert "median shorter side 40" in ds.preprocessing.size_source
    pinned = load_data(DataConfig(source=str(tmp_path / "d"), input_size=(24, 32), size_source="--input-size"))
    assert pinned.train.images.shape[2:] == (24, 32) and pinned.preprocessing.size_source == "--input-size"
    assert pinned.fingerprint != ds.fingerprint


def test_rrc_batches_are_seeded_and_shaped():
    torch = pytest.importorskip("torch")
    from edgekd.data.batches import train_batches
    from edgekd.data.sources import Split
    from edgekd.manifest import Preprocessing

    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 255, (20, 3, 64, 64), dtype=np.uint8), np.arange(20) % 2)
    pre = Preprocessing(input_size=(64, 64), channels=3, mean=[0.5] * 3, std=[0.5] * 3, class_names=["a", "b"])
    kw = dict(batch_size=8, seed=1, epoch=0, augment="rrc_flip")
    a = [x for x, _, _ in train_batches(split, pre, **kw)]
    b = [x for x, _, _ in train_batches(split, pre, prefetch=0, **kw)]
    assert len(a) == 2 and a[0].shape == (8, 3, 64, 64) and a[0].dtype == torch.float32
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)  # prefetch threads do not change the result
    plain = next(train_batches(split, pre, **dict(kw, augment="none")))[0]
    assert not torch.allclose(a[0], plain)


def test_concurrent_processes_decode_once(tmp_path):
    """torchrun ranks load at once: one decodes (file lock), the others open its memory map."""
    import subprocess
    import sys

    _tree(tmp_path / "d", n=20)
    code = (
        "import sys, edgekd.preprocess as p\n"
        "from pathlib import Path\n"
        "calls = []\n"
        "real = p.load_image\n"
        "p.load_image = lambda *a: calls.append(1) or real(*a)\n"
        "from edgekd.data.sources import index_folder, load_images\n"
        "from edgekd.manifest import Preprocessing\n"
        "idx = index_folder(Path(sys.argv[1]))\n"
        "pre = Preprocessing(input_size=(16, 20), channels=3, mean=[0.5]*3, std=[0.5]*3, class_names=['a', 'b'])\n"
        "s = load_images(idx, pre, Path(sys.argv[2]), 'fp')\n"
        "print(len(calls), int(s.images.sum()))\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "d"), str(tmp_path / "cache")],
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate()[0].split() for p in procs]
    assert sorted(int(o[0]) for o in outs) == [0, 40] and outs[0][1] == outs[1][1]


def test_read_rows_equals_indexing(tmp_path, monkeypatch):
    """Batches read memory-mapped rows with positioned reads: the same bytes as indexing, in idx order."""
    _tree(tmp_path / "d", n=10)
    ds = load_data(DataConfig(source=str(tmp_path / "d"), val_fraction=0.5), tmp_path / "cache")
    monkeypatch.setattr(sources, "PREAD_MIN_ROW", 1)
    full = np.load(next((tmp_path / "cache").glob("images-*[0-9a-f].npy")), mmap_mode="c")
    idx = np.array([7, 2, 2, 9, 0])
    np.testing.assert_array_equal(sources.read_rows(full, idx), full[idx])
    np.testing.assert_array_equal(sources.read_rows(full[3:], idx[:2]), full[3:][idx[:2]])  # a view: indexing
    np.testing.assert_array_equal(sources.read_rows(ds.val.images, [1, 0]), ds.val.images[[1, 0]])
