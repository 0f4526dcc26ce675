"""Data: ImageFolder trees, deterministic splits, stratified calibration sets."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from edgekd.data.calibration import read_calibration, sample_calibration, write_calibration
from edgekd.data.dataset import DataConfig, load_data
from edgekd.errors import UsageError


def _tree(root, classes=("a", "b", "c"), n=10, size=(12, 10)):
    from PIL import Image

    rng = np.random.default_rng(zlib.crc32(f"{root}{classes}".encode()))  # distinct images in every folder
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


def _keys(split) -> set[bytes]:
    """One key per image (the generated images are random, so distinct)."""
    return {img.tobytes() for img in split.images}


def _assert_disjoint(ds) -> None:
    train, val, test = _keys(ds.train), _keys(ds.val), _keys(ds.test)
    assert len(train) == len(ds.train) and len(val) == len(ds.val) and len(test) == len(ds.test)
    assert not (train & val) and not (train & test) and not (val & test)


def test_digits_default_is_split_into_three_seeded_stratified_roles():
    a, b, other = load_data(DataConfig()), load_data(DataConfig()), load_data(DataConfig(split_seed=5))
    assert a.train.images.shape[1:] == (1, 8, 8)
    assert (len(a.train), len(a.val), len(a.test)) == (1259, 179, 359)  # 70/10/20 of 1,797, per class rounded
    np.testing.assert_array_equal(a.test.images, b.test.images)
    np.testing.assert_array_equal(a.val.labels, b.val.labels)
    assert not np.array_equal(a.test.images, other.test.images) and a.fingerprint != other.fingerprint
    for split, share in ((a.val, 0.1), (a.test, 0.2)):  # stratified: every class in proportion
        counts = np.bincount(split.labels, minlength=10)
        full = np.bincount(np.concatenate([a.train.labels, a.val.labels, a.test.labels]), minlength=10)
        assert np.all(np.abs(counts - full * share) <= 1)
    assert a.facts("val") == {"split": "val", "images": 179,
                              "origin": "carved 10% of sklearn digits (stratified, seed 0)"}
    assert a.roles_line().startswith("decisions: val (179 images, carved 10%")
    assert "reported: test (359 images, carved 20%" in a.roles_line()


def test_single_tree_is_split_into_train_val_test(tmp_path):
    _tree(tmp_path / "d")
    one = load_data(DataConfig(source=str(tmp_path / "d"), split_seed=3), tmp_path / "cache")
    two = load_data(DataConfig(source=str(tmp_path / "d"), split_seed=3))
    other = load_data(DataConfig(source=str(tmp_path / "d"), split_seed=4))
    _assert_disjoint(one)
    for split, per_class in ((one.train, 7), (one.val, 1), (one.test, 2)):  # 10 per class: 70/10/20
        assert np.bincount(split.labels).tolist() == [per_class] * 3
    np.testing.assert_array_equal(one.test.images, two.test.images)
    np.testing.assert_array_equal(one.val.images, two.val.images)
    assert _keys(one.test) != _keys(other.test)
    assert one.preprocessing.input_size == (12, 10) and one.preprocessing.class_names == ["a", "b", "c"]
    assert list((tmp_path / "cache").glob("images-*.npy"))  # the decoded memory map
    assert one.origins["test"] == "carved 20% of d/ (stratified, seed 3)"


def test_changing_the_val_fraction_never_moves_test_images(tmp_path):
    _tree(tmp_path / "d", n=20)
    small = load_data(DataConfig(source=str(tmp_path / "d"), val_fraction=0.1))
    large = load_data(DataConfig(source=str(tmp_path / "d"), val_fraction=0.3))
    assert _keys(small.test) == _keys(large.test)
    assert (len(small.val), len(large.val)) == (6, 18) and small.fingerprint != large.fingerprint


@pytest.mark.parametrize("beside", ["test", "val"])
def test_a_lone_folder_beside_train_is_the_test_role_and_val_is_carved_from_train(tmp_path, beside):
    _tree(tmp_path / "d" / "train", n=20)
    _tree(tmp_path / "d" / beside, n=4, size=(12, 10))
    ds = load_data(DataConfig(source=str(tmp_path / "d"), split_seed=1, val_fraction=0.25))
    _assert_disjoint(ds)
    given = load_data(DataConfig(source=str(tmp_path / "d" / beside), test_fraction=0.5, val_fraction=0.25))
    assert _keys(ds.test) == _keys(given.train) | _keys(given.val) | _keys(given.test)  # all of the given folder
    assert np.bincount(ds.val.labels).tolist() == [5, 5, 5] and np.bincount(ds.train.labels).tolist() == [15] * 3
    assert len(ds.test) == 12
    assert ds.origins["val"] == "carved 25% of train/ (stratified, seed 1)"
    assert ds.origins["test"].startswith(f"given {beside}/")
    other_seed = load_data(DataConfig(source=str(tmp_path / "d"), split_seed=2, val_fraction=0.25))
    assert _keys(other_seed.val) != _keys(ds.val) and _keys(other_seed.test) == _keys(ds.test)


def test_train_val_test_folders_are_taken_as_given(tmp_path):
    for role, n in (("train", 6), ("val", 2), ("test", 3)):
        _tree(tmp_path / "d" / role, n=n)
    ds = load_data(DataConfig(source=str(tmp_path / "d")))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (18, 6, 9)
    assert ds.origins == {"train": "given train/", "val": "given val/", "test": "given test/"}


@pytest.mark.parametrize("given", ["val", "test"])
def test_train_and_test_folders_must_share_classes(tmp_path, given):
    _tree(tmp_path / "d" / "train")
    _tree(tmp_path / "d" / given, classes=("a", "b"))
    with pytest.raises(UsageError, match=f"different class folders \\(only in train/: c\\)"):
        load_data(DataConfig(source=str(tmp_path / "d")))


def test_a_class_too_small_for_three_roles_is_named(tmp_path):
    _tree(tmp_path / "d", n=5)
    _tree(tmp_path / "d", classes=("tiny",), n=2)
    with pytest.raises(UsageError, match="class 'tiny' has 2 image\\(s\\) in d/: .* needs at least 3 images per class"):
        load_data(DataConfig(source=str(tmp_path / "d")))


def test_a_class_too_small_to_carve_val_from_train_is_named(tmp_path):
    _tree(tmp_path / "d" / "train", classes=("a", "b"), n=4)
    _tree(tmp_path / "d" / "train", classes=("c",), n=1)
    _tree(tmp_path / "d" / "test", classes=("a", "b", "c"), n=2)
    with pytest.raises(UsageError, match="class 'c' has 1 image\\(s\\) in train/: .* needs at least 2"):
        load_data(DataConfig(source=str(tmp_path / "d")))


def test_fractions_that_leave_no_training_images_are_refused(tmp_path):
    _tree(tmp_path / "d")
    with pytest.raises(UsageError, match="--test-fraction 0.6 \\+ --val-fraction 0.5 leave no training images"):
        load_data(DataConfig(source=str(tmp_path / "d"), val_fraction=0.5, test_fraction=0.6))


def test_per_class_caps_apply_to_each_role_and_are_said():
    ds = load_data(DataConfig(max_train_per_class=20, max_val_per_class=3, max_test_per_class=5))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (200, 30, 50)
    assert ds.origins["test"].endswith("at most 5 per class") and "subset" in ds.description


def test_calibration_is_stratified_and_round_trips(tmp_path):
    ds = load_data(DataConfig())
    calib = sample_calibration(ds.train, 100, seed=0)
    counts = np.bincount(calib.labels, minlength=10)
    assert counts.min() >= 9 and counts.sum() <= 100
    write_calibration(tmp_path / "c.npz", calib, ds.preprocessing)
    back = read_calibration(tmp_path / "c.npz", ds.preprocessing)
    np.testing.assert_array_equal(back.images, calib.images)
