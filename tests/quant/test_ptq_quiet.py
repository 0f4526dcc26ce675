"""nncf.quantize draws no progress bars of its own inside edgekd (the search quantizes every candidate)."""

from __future__ import annotations

import contextlib

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("nncf")


def _quantize_small_cnn() -> None:
    from edgekd.models.registry import build_model
    from edgekd.quant.ptq import QuantSpec, quantize

    model = build_model("small_cnn", 10, 1, input_size=8).eval()
    quantize(model, [torch.randn(32, 1, 8, 8)], QuantSpec(), torch.zeros(1, 1, 8, 8))


def test_ptq_prints_no_nncf_progress_bars(capsys, monkeypatch):
    from rich import get_console

    import edgekd.quant.quiet as quiet

    _quantize_small_cnn()
    out = capsys.readouterr()
    assert "Statistics collection" not in out.out + out.err
    assert get_console().quiet is False  # restored afterwards
    monkeypatch.setattr(quiet, "nncf_quiet", contextlib.nullcontext)  # without it, NNCF's bar shows
    _quantize_small_cnn()
    out = capsys.readouterr()
    assert "Statistics collection" in out.out + out.err
