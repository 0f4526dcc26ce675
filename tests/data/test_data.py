"""Data: ImageFolder trees, deterministic splits, stratified calibration sets."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.data.calibration import read_calibration, sample_calibration, write_calibration
from edgekd.data.dataset import DataConfig, load_data
from edgekd.errors import UsageError


def _tree(root, classes=("a", "b", "c"), n=10, size=(12, 10)):
    from PIL import Image

    rng = np.random.default_rng(1)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


def test_digits_default_has_fixed_split():
    a, b = load_data(DataConfig()), load_data(DataConfig(split_seed=5))
    assert a.train.images.shape[1:] == (1, 8, 8) and len(a.val) == 360
    np.testing.assert_array_equal(a.val.labels, b.val.labels)  # the digits split is fixed


def test_single_tree_is_split_deterministically_and_stratified(tmp_path):
    _tree(tmp_path / "d")
    one = load_data(DataConfig(source=str(tmp_path / "d"), split_seed=3), tmp_path / "cache")
    two = load_data(DataConfig(source=str(tmp_path / "d"), split_seed=3))
    other = load_data(DataConfig(source=str(tmp_path / "d"), split_seed=4))
    np.testing.assert_array_equal(one.val.images, two.val.images)
    assert not np.array_equal(one.val.images, other.val.images)
    assert np.bincount(one.val.labels).tolist() == [2, 2, 2]
    assert one.preprocessing.input_size == (12, 10) and one.preprocessing.class_names == ["a", "b", "c"]
    assert list((tmp_path / "cache").glob("images-*.npy"))  # the decoded memory map


def test_train_val_folders_must_share_classes(tmp_path):
    _tree(tmp_path / "d" / "train")
    _tree(tmp_path / "d" / "val", classes=("a", "b"))
    with pytest.raises(UsageError, match="different class folders"):
        load_data(DataConfig(source=str(tmp_path / "d")))


def test_calibration_is_stratified_and_round_trips(tmp_path):
    ds = load_data(DataConfig())
    calib = sample_calibration(ds.train, 100, seed=0)
    counts = np.bincount(calib.labels, minlength=10)
    assert counts.min() >= 9 and counts.sum() <= 100
    write_calibration(tmp_path / "c.npz", calib, ds.preprocessing)
    back = read_calibration(tmp_path / "c.npz", ds.preprocessing)
    np.testing.assert_array_equal(back.images, calib.images)
