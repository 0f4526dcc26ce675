"""Input resolution as a compression knob, unit by unit (no training): the sizes the search tries, the scale
checks, the student's preprocessing at a size, the downscale of a batch, the distillation step that feeds each
model its own size, and a candidate copied at a smaller size."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.errors import UsageError
from edgekd.manifest import Preprocessing
from edgekd.search.resolution import MIN_SIDE, at_size, check_scales, student_sizes

torch = pytest.importorskip("torch")


def _pre(h: int = 128, w: int = 171, source: str = "image_file", resize: int | None = 146) -> Preprocessing:
    return Preprocessing(input_size=(h, w), channels=3, mean=[0.5] * 3, std=[0.25] * 3, resize_shorter=resize,
                         source=source, size_source="the data's median size", class_names=["a", "b", "c"])


# ------------------------------------------------------------------------------------------------ student_sizes
def test_student_sizes_of_a_photo_folder_are_the_default_scales_largest_first():
    assert student_sizes(_pre(), (0.75, 0.5)) == [(96, 128), (64, 86)]
    assert student_sizes(_pre(), (0.5, 0.75)) == [(96, 128), (64, 86)]  # order given does not matter


def test_student_sizes_stop_at_32_px_on_the_shorter_side():
    # 64x64: 0.5 gives exactly 32 (kept), 0.25 gives 16 (dropped)
    assert student_sizes(_pre(64, 64), (0.75, 0.5, 0.25)) == [(48, 48), (32, 32)]
    assert student_sizes(_pre(40, 60), (0.75, 0.5)) == []  # 30x45: below MIN_SIDE
    assert all(min(s) >= MIN_SIDE for s in student_sizes(_pre(33, 200), (0.99, 0.9, 0.5)))


def test_student_sizes_drop_duplicates_the_full_size_and_scales_outside_0_1():
    # 0.5 and 0.501 round to the same 32x32; 1.0 is the data's size itself; 0 and 1.5 are not smaller sizes
    assert student_sizes(_pre(64, 64), (0.5, 0.501, 0.5, 1.0, 0, 1.5)) == [(32, 32)]
    assert student_sizes(_pre(64, 64), (0.995,)) == []  # rounds back to 64x64


def test_arrays_are_never_resized():
    assert student_sizes(_pre(64, 64, source="array", resize=None), (0.75, 0.5)) == []


# ------------------------------------------------------------------------------------------------ check_scales
@pytest.mark.parametrize("scale", [1.5, 0.0, -0.5])
def test_a_scale_outside_0_1_is_refused(scale):
    with pytest.raises(UsageError, match=r"give fractions of the data's input size in \(0, 1\]"):
        check_scales([0.75, scale], (128, 171))


def test_a_scale_below_32_px_names_the_smallest_allowed_scale():
    with pytest.raises(UsageError) as err:
        check_scales([0.75, 0.2, 0.1], (128, 171))
    msg = str(err.value)
    assert "--search-resolutions 0.1 gives 13x17 px from the data's 128x171" in msg
    assert "32 px on the shorter side" in msg and "use a scale of at least 0.25" in msg


@pytest.mark.parametrize("side", [64, 70, 96, 128, 171, 310, 333, 1000])
def test_the_smallest_scale_the_error_suggests_is_accepted(side):
    """"use a scale of at least S": S itself must pass (rounded up, not to the nearest hundredth: at 310 px,
    0.10 gives 31 px)."""
    with pytest.raises(UsageError) as err:
        check_scales([0.01], (side, side + 7))
    least = float(str(err.value).rsplit(" ", 1)[-1])
    check_scales([least], (side, side + 7))
    assert least - 0.01 <= MIN_SIDE / side <= least


def test_scales_within_bounds_pass_and_arrays_skip_the_pixel_floor():
    check_scales([1.0, 0.75, 0.25], (128, 171))  # 0.25 -> 32x43: allowed
    check_scales([0.1], (8, 8), source="array")  # arrays are never resized: no pixel floor


# ------------------------------------------------------------------------------------------------ at_size
def test_at_size_scales_the_resize_and_says_why():
    pre = _pre()
    small = at_size(pre, (64, 86), "--student-input-size")
    assert small.input_size == (64, 86)
    assert small.resize_shorter == round(146 * 0.5)
    assert small.size_source.startswith("--student-input-size: 50% of the data's 128x171")
    assert "the data's median size" in small.size_source  # the data's own reason is kept
    assert (small.mean, small.std, small.interpolation) == (pre.mean, pre.std, pre.interpolation)
    assert at_size(pre, (96, 128)).size_source.startswith("the student search: 75%")


def test_at_size_never_resizes_below_the_crop_and_returns_pre_itself_at_its_size():
    pre = _pre(64, 64, resize=64)
    assert at_size(pre, (32, 32)).resize_shorter == 32
    assert at_size(pre, (64, 64)) is pre
    assert at_size(pre, [64, 64]) is pre  # a list (as read from JSON) is the same size
    assert at_size(_pre(resize=None), (64, 86)).resize_shorter is None


# ------------------------------------------------------------------------------------------------ downscale
def test_downscale_shape_and_identity():
    from edgekd.search.resolution import downscale

    x = torch.randn(2, 3, 64, 86)
    assert downscale(x, (32, 43)).shape == (2, 3, 32, 43)
    assert downscale(x, None) is x
    assert downscale(x, (64, 86)) is x
    assert downscale(x, [64, 86]) is x


def test_downscale_keeps_a_constant_image_constant():
    from edgekd.search.resolution import downscale

    x = torch.full((1, 3, 64, 64), -0.37)
    torch.testing.assert_close(downscale(x, (24, 40)), torch.full((1, 3, 24, 40), -0.37))


def test_downscale_matches_pillows_bilinear_shrink_of_a_smooth_image():
    """What the student trains on (torch) and what it is judged and deployed on (Pillow's decode at its size)
    agree within a rounding step on a smooth image."""
    from PIL import Image

    from edgekd.search.resolution import downscale

    yy, xx = np.mgrid[0:96, 0:128].astype(np.float64)
    img = np.stack([127 + 100 * np.sin(xx / 13.0) * np.cos(yy / 17.0), 2 * xx, 255 - 2 * yy], -1)
    img = np.clip(img, 0, 255).astype(np.uint8)
    pil = np.asarray(Image.fromarray(img).resize((64, 48), Image.Resampling.BILINEAR), dtype=np.float32)
    x = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None]
    ours = downscale(x, (48, 64))[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - pil).max() <= 2.0, np.abs(ours - pil).max()
    assert np.abs(ours - pil).mean() <= 0.6


# ------------------------------------------------------------------------------------------------ make_step
class _Recorder(torch.nn.Module):
    def __init__(self, k: int = 3):
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []
        self.fc = torch.nn.Linear(3, k)

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return self.fc(x.mean(dim=(2, 3)))


def test_make_step_feeds_the_student_the_downscaled_batch_and_the_teacher_the_full_one():
    from edgekd.losses.training import make_step

    student, teacher = _Recorder(), _Recorder()
    seen = {}

    def loss(s_logits, t_logits, y, s_feats, t_feats):
        seen.update(s=s_logits.shape, t=t_logits.shape)
        return (s_logits - t_logits).pow(2).mean()

    x, y = torch.randn(4, 3, 64, 86), torch.zeros(4, dtype=torch.long)
    step = make_step(loss, None, None, teacher, None, (32, 43))
    step(student, x, y, list(range(4))).backward()
    assert student.shapes == [(4, 3, 32, 43)] and teacher.shapes == [(4, 3, 64, 86)]
    assert seen == {"s": (4, 3), "t": (4, 3)}
    # no student size: both see the batch as read
    student.shapes.clear(), teacher.shapes.clear()
    make_step(loss, None, None, teacher, None)(student, x, y, list(range(4)))
    assert student.shapes == teacher.shapes == [(4, 3, 64, 86)]


def test_make_step_with_cached_teacher_logits_still_downscales_for_the_student():
    from edgekd.losses.training import make_step

    student, teacher = _Recorder(), _Recorder()
    cache = torch.randn(10, 3)
    got = {}

    def loss(s_logits, t_logits, y, s_feats, t_feats):
        got["t"] = t_logits
        return s_logits.sum()

    make_step(loss, None, None, teacher, cache, (32, 32))(student, torch.randn(2, 3, 64, 64), None, [7, 2])
    assert student.shapes == [(2, 3, 32, 32)] and teacher.shapes == []
    torch.testing.assert_close(got["t"], cache[[7, 2]])


# ------------------------------------------------------------------------------------------------ Candidate.at_size
def _candidate():
    pytest.importorskip("torch_pruning")
    from edgekd.models.registry import build_model
    from edgekd.search.candidates import Candidate
    from edgekd.search.prune import count_macs

    model = build_model("small_cnn", num_classes=3, in_channels=3, input_size=64)
    example = torch.randn(4, 3, 64, 64)
    return Candidate("small_cnn", "small_cnn", "family", model, count_macs(model, example[:1]), 1234), example


def test_a_candidate_at_a_smaller_size_is_a_named_copy_with_its_own_weights_and_fewer_macs():
    cand, example = _candidate()
    small = cand.at_size((32, 32), example)
    assert small.name == "small_cnn-32x32" and small.input_size == (32, 32)
    assert (small.arch, small.source, small.params) == (cand.arch, cand.source, cand.params)
    assert cand.input_size is None and cand.name == "small_cnn"  # the original is unchanged
    assert 0 < small.macs < cand.macs
    a, b = next(cand.model.parameters()), next(small.model.parameters())
    assert a is not b and torch.equal(a, b)
    with torch.no_grad():
        b.add_(1.0)  # training the copy leaves the candidate at the data's size as it was
    assert not torch.equal(a, b)
    assert small.record()["input_size"] == [32, 32] and cand.record()["input_size"] is None


def test_a_shrunk_candidate_shrunk_again_replaces_its_size_suffix():
    cand, example = _candidate()
    smaller = cand.at_size((48, 48), example).at_size((32, 32), example)
    assert smaller.name == "small_cnn-32x32" and smaller.input_size == (32, 32)
