from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekd.runtimes.memory import current_rss_bytes, model_size_bytes, peak_rss_bytes


def test_peak_rss_is_bytes_and_monotonic() -> None:
    before = peak_rss_bytes()
    assert before > 10 * 2**20  # a Python process with numpy is well over 10 MiB (so the unit is bytes, not KB)
    block = np.ones(64 * 2**20 // 8)  # touch 64 MiB
    current = current_rss_bytes()
    after = peak_rss_bytes()
    assert after >= before
    if current is not None:
        assert current >= block.nbytes
        assert after >= 0.95 * current  # the peak covers what is resident now (kernel counters lag a little)


def test_model_size_bytes(tmp_path: Path) -> None:
    (tmp_path / "m.xml").write_bytes(b"x" * 100)
    (tmp_path / "m.bin").write_bytes(b"x" * 1000)
    assert model_size_bytes(tmp_path / "m.xml") == 100
    assert model_size_bytes([tmp_path / "m.xml", str(tmp_path / "m.bin")]) == 1100
    assert model_size_bytes([tmp_path, tmp_path / "m.bin"]) == 1100  # a file is counted once
    with pytest.raises(FileNotFoundError):
        model_size_bytes(tmp_path / "missing.onnx")
