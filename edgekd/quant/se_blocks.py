"""Whether NNCF quantizes the two 1x1 convolutions of squeeze-excitation (SE) blocks.

NNCF registers an SE_BLOCK ignored pattern (nncf/torch/quantization/ignored_patterns.py) for every device and
model type: mean -> conv -> act -> conv -> (hard) sigmoid -> mul is left in floating point, for accuracy. It has
no public switch, so `nncf_se_blocks(quantized=True)` removes the pattern from the torch registry for the
duration of one `nncf.quantize` call and puts it back afterwards.

edgekd quantizes them by default (QuantSpec.quantize_se_blocks). Measured on OpenVINO CPU with
bench/bench_se_quant.py (bench/RESULTS.md, "SE-block convolutions"): a MobileNetV3-Small with its 18 SE
convolutions in float ran each as f32 between u8 layers, and quantizing them made the INT8 model faster at the
same val/test top-1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

QUANTIZE_SE_BLOCKS = True  # the default of QuantSpec.quantize_se_blocks (edgekd.models.family reads it too)


@contextmanager
def nncf_se_blocks(quantized: bool) -> Iterator[None]:
    """Inside: NNCF's torch backend quantizes SE-block convolutions when `quantized`, else keeps them in float."""
    if not quantized:
        yield
        return
    try:  # NNCF internals (tested with 3.4): where they moved, keep NNCF's choice and say so
        from nncf.common.graph.patterns.patterns import IgnoredPatternNames
        from nncf.torch.quantization.ignored_patterns import PT_IGNORED_PATTERNS

        registry = PT_IGNORED_PATTERNS.registry_dict
        saved = registry.pop(IgnoredPatternNames.SE_BLOCK, None)
    except (ImportError, AttributeError) as exc:
        import warnings

        warnings.warn(f"this NNCF has no SE_BLOCK ignored pattern where edgekd looks ({exc}): squeeze-excitation "
                      "convolutions stay in float", stacklevel=3)
        yield
        return
    try:
        yield
    finally:
        if saved is not None:
            registry[IgnoredPatternNames.SE_BLOCK] = saved
