"""The torch-free reference preprocessing: EXIF, colour modes, resize-shorter + centre crop, input sizes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgekd.data.sizing import default_augment, default_resize, parse_input_size
from edgekd.data.sources import Probe, median_input_size
from edgekd.manifest import Preprocessing
from edgekd.preprocess_reference import load_image, normalize, resize_center_crop


def _pre(size=(8, 8), channels=3, **kw) -> Preprocessing:
    return Preprocessing(input_size=size, channels=channels, mean=[0.5] * channels, std=[0.25] * channels,
                         class_names=["a"], **kw)


def test_exif_orientation_is_applied(tmp_path):
    """A portrait photo stored landscape with orientation 6 (rotate 90 clockwise) is seen upright."""
    a = np.zeros((10, 20, 3), np.uint8)
    a[:, :10] = 255  # left half white as stored
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(tmp_path / "p.jpg", exif=exif.tobytes(), quality=100)
    upright = load_image(tmp_path / "p.jpg", _pre((20, 10), resize_shorter=10))
    stored = load_image(tmp_path / "p.jpg", _pre((10, 20), resize_shorter=10, exif_transpose=False))
    assert upright.shape == (3, 20, 10) and stored.shape == (3, 10, 20)
    assert upright[:, :8].mean() > 200 and upright[:, 12:].mean() < 50  # stored left half is now on top


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "1", "RGB"])
def test_every_mode_becomes_uint8_rgb(tmp_path, mode):
    img = Image.fromarray(np.full((6, 6, 3), 120, np.uint8)).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        img = Image.fromarray(np.full((6, 6), 65535, np.uint16))
    path = tmp_path / ("x.tiff" if mode in ("CMYK", "I;16") else "x.png")
    img.save(path)
    out = load_image(path, _pre((6, 6)))
    assert out.dtype == np.uint8 and out.shape == (3, 6, 6)
    if mode == "I;16":
        assert (out == 255).all()  # 16-bit full scale -> 8-bit full scale, not clipped garbage


def test_alpha_is_composited_on_the_recorded_background(tmp_path):
    a = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    Image.fromarray(a, "RGBA").save(tmp_path / "t.png")
    assert (load_image(tmp_path / "t.png", _pre((4, 4))) == 255).all()
    grey = load_image(tmp_path / "t.png", _pre((4, 4), alpha_background=(10, 20, 30)))
    assert grey[:, 0, 0].tolist() == [10, 20, 30]


def test_sixteen_bit_scales_not_truncates(tmp_path):
    Image.fromarray(np.full((4, 4), 257 * 100, np.uint16)).save(tmp_path / "g.png")
    assert (load_image(tmp_path / "g.png", _pre((4, 4), channels=1)) == 100).all()


def test_resize_shorter_then_centre_crop_matches_the_documented_steps():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
    out = resize_center_crop(img, (224, 224), 256, "bicubic")
    by_hand = img.resize((341, 256), Image.Resampling.BICUBIC).crop((58, 16, 282, 240))  # 256/300 * 400 = 341.3
    assert out.size == (224, 224)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(by_hand))


def test_same_size_images_are_untouched():
    a = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(resize_center_crop(Image.fromarray(a), (32, 32), 32)), a)


def test_normalize_formula():
    raw = np.full((1, 3, 2, 2), 255, np.uint8)
    np.testing.assert_allclose(normalize(raw, _pre()), (1 - 0.5) / 0.25)


@pytest.mark.parametrize("value,want", [("224", (224, 224)), ("256x192", (256, 192)), (96, (96, 96)),
                                        ([30, 40], (30, 40))])
def test_parse_input_size(value, want):
    assert parse_input_size(value) == want


@pytest.mark.parametrize("value", ["0", "abc", "3x", "x3", "-5", "1x2x3", "99999"])
def test_parse_input_size_refuses(value):
    with pytest.raises(ValueError, match="N or HxW"):
        parse_input_size(value)


def test_input_size_from_the_median_not_the_first_file():
    probe = Probe(sizes=[(20, 30)] + [(300, 400)] * 4 + [(500, 200)] * 2, modes=["RGB"] * 7, unreadable=0)
    size, why = median_input_size(probe, cap=224)
    assert size == (224, 224) and "capped at 224" in why
    size, _ = median_input_size(Probe([(20, 30)] + [(100, 120)] * 4, ["RGB"] * 5, 0), cap=224)
    assert size == (100, 100)
    assert median_input_size(Probe([(12, 10)] * 3, ["RGB"] * 3, 0), cap=224)[0] == (12, 10)


def test_eval_resize_and_augmentation_defaults():
    assert default_resize((224, 224)) == 256 and default_resize((32, 32)) == 32
    assert default_augment(3, (224, 224)) == "rrc_flip"
    assert default_augment(3, (32, 32)) == "crop_flip" and default_augment(1, (28, 28)) == "crop"


def test_legacy_resize_field_still_reads():
    pre = Preprocessing.model_validate({"input_size": [8, 8], "channels": 1, "mean": [0.5], "std": [0.5],
                                        "resize": 10, "class_names": ["a"]})
    assert pre.resize_shorter == 10


def test_input_size_precedence(monkeypatch):
    """--input-size, then the target's pinned size, then the pretrained teacher's published size."""
    from types import SimpleNamespace

    import edgekd.data.sizing as sizing

    published = {"mean": [0.4, 0.4, 0.4], "std": [0.2, 0.2, 0.2], "input_size": 224, "resize_size": 232,
                 "interpolation": "bicubic"}
    monkeypatch.setattr(sizing, "teacher_preprocessing", lambda arch: published)
    opts = SimpleNamespace(strict_data=False, teacher="resnet50", pretrained=True, input_size=None)
    target = SimpleNamespace(name="t", input_size=None)
    got = sizing.preprocessing_options(opts, target)
    assert got["input_size"] == (224, 224) and got["resize_shorter"] == 232 and got["interpolation"] == "bicubic"
    assert "resnet50's published weights" in got["size_source"] and got["mean"] == [0.4, 0.4, 0.4]
    assert sizing.preprocessing_options(opts, SimpleNamespace(name="t", input_size=(96, 96)))["input_size"] == (96, 96)
    mine = sizing.preprocessing_options(SimpleNamespace(**{**vars(opts), "input_size": (64, 48)}), target)
    assert mine["input_size"] == (64, 48) and mine["size_source"] == "--input-size"
    scratch = sizing.preprocessing_options(SimpleNamespace(**{**vars(opts), "pretrained": False}), target)
    assert "input_size" not in scratch and "mean" not in scratch  # a teacher trained here publishes nothing


def test_normalized_images_is_normalize_np_a_slice_at_a_time():
    """The bench stage, bundle, report, bench and gate read the eval split through this view, so a large test
    split is never held as float32 whole; it must give exactly what normalize_np gives."""
    from edgekd.manifest import Preprocessing
    from edgekd.preprocess import NormalizedImages, normalize_np

    pre = Preprocessing(input_size=(4, 4), channels=3, mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3],
                        class_names=["a", "b"])
    raw = np.random.default_rng(0).integers(0, 256, (10, 3, 4, 4), dtype=np.uint8)
    view = NormalizedImages(raw, pre)
    assert len(view) == 10 and view.shape == (10, 3, 4, 4)
    np.testing.assert_array_equal(view[2:7], normalize_np(raw[2:7], pre))
    np.testing.assert_array_equal(view[np.array([9, 0])], normalize_np(raw[[9, 0]], pre))
