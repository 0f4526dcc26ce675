"""Input resolution as a compression knob: the student may see a smaller image than its teacher.

A student at a smaller input size is distilled from the teacher at the data's size: each training batch is
read at the data's size, the teacher sees it as is, and the student sees it downscaled (`downscale`: bilinear,
antialiased, as Pillow's filter is when a photo is shrunk). Every decision and every reported figure for that
student uses the data decoded straight at its own size (`at_size`: the same eval transform, resize shorter
side and centre crop, with both sizes scaled), which is what the bundle's `preprocess.py` and `edgekd eval`
do on a device; so the reported top-1 is reproduced from raw files.

Sizes: `scales` (fractions of the data's height and width, default 3/4 and 1/2), never below MIN_SIDE pixels
on the shorter side: the family's photo networks (MobileNetV3, ResNet-18, timm's) downsample 32x, so at 32 px
their last feature map is already 1x1; below it the image holds less than one cell of their final grid. Images
given as arrays (the embedded digits) are never resized.
"""

from __future__ import annotations

import math

from edgekd.errors import UsageError
from edgekd.manifest import Preprocessing

MIN_SIDE = 32
DEFAULT_SCALES = (0.75, 0.5)


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(H, W) times `scale`, rounded to whole pixels."""
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def resizable(pre: Preprocessing) -> bool:
    """Image files can be decoded at another size; raw arrays cannot."""
    return pre.source == "image_file"


def student_sizes(pre: Preprocessing, scales) -> list[tuple[int, int]]:
    """The smaller input sizes the search tries for `pre`'s data: each scale below 1 whose shorter side keeps
    at least MIN_SIDE pixels (largest first, no duplicates)."""
    if not resizable(pre):
        return []
    out: list[tuple[int, int]] = []
    for s in sorted({float(s) for s in scales if 0 < float(s) < 1}, reverse=True):
        size = scaled_size(tuple(pre.input_size), s)
        if min(size) >= MIN_SIDE and size not in out and size != tuple(pre.input_size):
            out.append(size)
    return out


def check_scales(scales, input_size: tuple[int, int], source: str = "image_file") -> None:
    """`--search-resolutions` outside (0, 1], or a scale that would give less than MIN_SIDE pixels: exit 2 with
    one line naming the smallest size the search's students take."""
    for s in scales:
        if not 0 < float(s) <= 1:
            raise UsageError(f"--search-resolutions {s:g}: give fractions of the data's input size in (0, 1], "
                             "e.g. 0.75 0.5")
    if source != "image_file":
        return
    small = [s for s in scales if min(scaled_size(tuple(input_size), float(s))) < MIN_SIDE]
    if small:
        s = min(small)
        h, w = scaled_size(tuple(input_size), float(s))
        least = math.ceil(MIN_SIDE / min(input_size) * 100 - 1e-9) / 100  # rounded up: it must itself pass
        raise UsageError(f"--search-resolutions {s:g} gives {h}x{w} px from the data's {input_size[0]}x"
                         f"{input_size[1]}: the smallest input a student takes is {MIN_SIDE} px on the shorter side "
                         f"(its networks downsample 32x); use a scale of at least {least:.2f}")


def at_size(pre: Preprocessing, size: tuple[int, int], why: str = "the student search") -> Preprocessing:
    """`pre` for a student at `size`: the same eval transform with the resize scaled, and `why` this size."""
    h, w = (int(v) for v in size)
    if (h, w) == tuple(pre.input_size):
        return pre
    scale = h / pre.input_size[0]
    resize = max(min(h, w), round(pre.resize_shorter * scale)) if pre.resize_shorter else None
    source = (f"{why}: {scale:.0%} of the data's {pre.input_size[0]}x{pre.input_size[1]} "
              f"({pre.size_source})")
    return pre.model_copy(update={"input_size": (h, w), "resize_shorter": resize, "size_source": source})


def downscale(x, size: tuple[int, int] | None):
    """Normalised images (N, C, H, W) -> (N, C, *size): bilinear, antialiased (torch's filter matches Pillow's
    shrinking within a rounding step); `x` itself when the size is already right or `size` is None."""
    import torch.nn.functional as F

    if size is None or tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(int(v) for v in size), mode="bilinear", antialias=True, align_corners=False)


def check_pinned_size(opts, target) -> None:
    """`--input-size` that disagrees with the size the target profile pins: exit 2 before the data is read."""
    pinned = getattr(target, "input_size", None)
    if opts.student_input_size is not None and pinned is not None and \
            tuple(opts.student_input_size) != tuple(pinned):
        raise UsageError(f"--student-input-size {opts.student_input_size[0]}x{opts.student_input_size[1]} disagrees "
                         f"with target {target.name}, which pins the deployed model's input to {pinned[0]}x{pinned[1]}"
                         ": drop --student-input-size")
    if opts.input_size is not None and pinned is not None and tuple(opts.input_size) != tuple(pinned):
        raise UsageError(f"--input-size {opts.input_size[0]}x{opts.input_size[1]} disagrees with target {target.name}, "
                         f"which pins {pinned[0]}x{pinned[1]}: drop --input-size (or use a profile without a pinned "
                         "size)")


def check_resolution_options(opts, pre: Preprocessing) -> None:
    """--student-input-size and --search-resolutions against the loaded data: exit 2 with one line."""
    size = tuple(pre.input_size)
    if opts.student_input_size is not None:
        h, w = opts.student_input_size
        if opts.student == "auto":
            raise UsageError("--student-input-size fixes the student's size: with --student auto the search "
                             "chooses it (--search-resolutions); pass one or the other")
        if (h, w) != size and not resizable(pre):
            raise UsageError(f"--student-input-size {h}x{w}: the data are arrays of {size[0]}x{size[1]} and cannot "
                             "be decoded at another size")
        if h > size[0] or w > size[1]:
            raise UsageError(f"--student-input-size {h}x{w} is larger than the teacher's {size[0]}x{size[1]}: a "
                             "student's input may only be smaller (raise --input-size for both)")
        if (h, w) not in (scaled_size(size, h / size[0]), scaled_size(size, w / size[1])):
            sh, sw = scaled_size(size, h / size[0])
            raise UsageError(f"--student-input-size {h}x{w} does not keep the data's {size[0]}x{size[1]} proportions: "
                             "the student trains on the teacher's images scaled down and is judged on the files "
                             f"decoded at its size, which must be the same picture (e.g. {sh}x{sw})")
        if min(h, w) < MIN_SIDE and (h, w) != size:
            raise UsageError(f"--student-input-size {h}x{w}: the smallest input a student takes is {MIN_SIDE} px on "
                             "the shorter side (its networks downsample 32x)")
    if opts.student == "auto" and "search_resolutions" in opts.model_fields_set:
        # the user's scales; the defaults simply give no smaller size where they would go below MIN_SIDE
        check_scales(opts.search_resolutions, size, pre.source)
