"""Reference preprocessing of an image file, numpy + Pillow only: the one implementation of the decode path.

edgekd's training data loader, `edgekd eval` and the bundle all call `load_image` here, so what the model
was trained on and what a device is told to feed it cannot drift apart. The bundle carries this file
verbatim as `preprocess.py`; a device team can use it without edgekd:

    import json, preprocess
    pre = json.load(open("bundle.json"))["preprocessing"]
    x = preprocess.normalize(preprocess.load_image("photo.jpg", pre)[None], pre)  # float32 (1, C, H, W)

or `python preprocess.py bundle.json photo.jpg out.npy`. `pre` is the bundle's `preprocessing` record (a dict)
or edgekd's Preprocessing object. Steps, in order:

1. decode with Pillow; an image over Pillow's decompression-bomb limit (Image.MAX_IMAGE_PIXELS) is refused
   before its pixels are allocated;
2. `exif_transpose`: apply the EXIF orientation tag (PIL.ImageOps.exif_transpose), as phone galleries do;
3. colour: 16-bit (or 32-bit integer) grey -> 8 bits as round(v * 255 / 65535) after clipping to 0..65535;
   32-bit float grey clipped to 0..255; an alpha channel (RGBA, LA, PA, P with transparency) is composited
   over `alpha_background`; then Pillow's convert to RGB (3 channels) or L (1 channel; ITU-R 601-2 luma);
4. resize, aspect kept, by s = max(resize_shorter / min(h, w), H / h, W / w) (or max(H / h, W / w) when
   resize_shorter is null) to (max(W, round(w s)), max(H, round(h s))) with Pillow's `interpolation` filter
   (antialiased when downscaling); skipped when the size does not change;
5. centre crop to (H, W) = input_size: left = (w' - W) // 2, top = (h' - H) // 2;
6. uint8 array (C, H, W); `normalize`: x = (raw / value_scale - mean) / std per channel, float32.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

FORMAT_VERSION = 1  # bump when any step above changes


def _get(pre: Any, key: str, default: Any = None) -> Any:
    if isinstance(pre, Mapping):
        return pre.get(key, default)
    return getattr(pre, key, default)


def _resample(name: str):
    from PIL import Image

    filters = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
               "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
    if name not in filters:
        raise ValueError(f"unknown interpolation {name!r}: one of {', '.join(filters)}")
    return filters[name]


def to_mode(img, channels: int, alpha_background=(255, 255, 255)):
    """Steps 3: any Pillow mode -> 'RGB' (channels 3) or 'L' (channels 1), explicitly."""
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        wide = np.clip(np.asarray(img, dtype=np.int64), 0, 65535)
        img = Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8), "L")
    elif mode == "F":
        img = Image.fromarray(np.clip(np.asarray(img, dtype=np.float32), 0, 255).round().astype(np.uint8), "L")
    elif mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        bg = Image.new("RGBA", img.size, (*(int(v) for v in alpha_background), 255))
        img = Image.alpha_composite(bg, img)
    want = "RGB" if channels == 3 else "L"
    if img.mode != want:
        img = img.convert("RGB") if channels == 1 and img.mode not in ("RGB", "L", "1") else img
        img = img.convert(want)
    return img


def resize_center_crop(img, size: tuple[int, int], resize_shorter: int | None, interpolation: str = "bilinear"):
    """Steps 4-5: aspect-preserving resize (covering the crop), then the centre crop to size (H, W)."""
    out_h, out_w = int(size[0]), int(size[1])
    h, w = img.height, img.width
    scale = max(out_h / h, out_w / w)
    if resize_shorter:
        scale = max(scale, int(resize_shorter) / min(h, w))
    new_w, new_h = max(out_w, round(w * scale)), max(out_h, round(h * scale))
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), _resample(interpolation))
    left, top = (new_w - out_w) // 2, (new_h - out_h) // 2
    if (left, top, new_w, new_h) != (0, 0, out_w, out_h):
        img = img.crop((left, top, left + out_w, top + out_h))
    return img


def load_image(path, pre: Any) -> np.ndarray:
    """Steps 1-5 for one file: uint8 (C, H, W) at the model's input size. Raises what Pillow raises for an
    unreadable file (OSError, PIL.Image.DecompressionBombError, ValueError)."""
    from PIL import Image, ImageOps

    channels = int(_get(pre, "channels", 3))
    with Image.open(path) as img:
        if _get(pre, "exif_transpose", True) and img.getexif().get(0x0112, 1) != 1:  # 0x0112: Orientation
            img = ImageOps.exif_transpose(img)
        img = to_mode(img, channels, _get(pre, "alpha_background", (255, 255, 255)))
        img = resize_center_crop(img, tuple(_get(pre, "input_size")), _get(pre, "resize_shorter"),
                                 _get(pre, "interpolation", "bilinear"))
        arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def normalize(raw: np.ndarray, pre: Any) -> np.ndarray:
    """Step 6: raw (N, C, H, W) -> float32 model input."""
    x = np.asarray(raw).astype(np.float32) / float(_get(pre, "value_scale", 255.0))
    mean = np.asarray(_get(pre, "mean"), dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(_get(pre, "std"), dtype=np.float32).reshape(1, -1, 1, 1)
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def _main(argv: list[str]) -> int:
    import json

    if len(argv) != 3:
        print("usage: python preprocess.py bundle.json IMAGE OUT.npy  (writes the float32 model input)")
        return 2
    with open(argv[0]) as fh:
        record = json.load(fh)
    pre = record.get("preprocessing", record)
    np.save(argv[2], normalize(load_image(argv[1], pre)[None], pre))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
