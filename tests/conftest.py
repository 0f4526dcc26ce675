"""Shared fixtures: one tiny end-to-end run of `compress` on the embedded digits, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

TINY = dict(teacher_epochs=1, finetune_epochs=1, probe_epochs=0, distill_epochs=2, qad_epochs=1, calib_size=64,
            max_fallback_layers=0)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run directory (intel-cpu target) with every stage, from tiny epochs; do not modify it."""
    pytest.importorskip("torch")
    pytest.importorskip("openvino")
    from edgekd.cli.compress import run_compress
    from edgekd.plan import CompressOptions

    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    run_compress(CompressOptions(**TINY), run_dir, quiet=True)
    assert (run_dir / "report.json").is_file()
    return run_dir


@pytest.fixture(scope="session")
def tiny_variant(tiny_run, tmp_path_factory) -> Path:
    """A copy of the tiny run rerun with --temperature 2 (distill and every later stage rerun, the earlier report
    moved to history/), built once for the tests that need a variant's stages; do not modify it."""
    import shutil

    from edgekd.cli.compress import run_compress
    from edgekd.plan import CompressOptions

    run_dir = tmp_path_factory.mktemp("tiny-t2") / "run"
    shutil.copytree(tiny_run, run_dir)
    run_compress(CompressOptions(**TINY, temperature=2.0), run_dir, quiet=True)
    return run_dir


def shared_path(*parts: str) -> Path:
    return SHARED.joinpath(*parts)


requires_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared (CIFAR-10-JPEG, pretrained ResNets) is absent")



@pytest.fixture(scope="session")
def _torch_default_threads():
    try:
        import torch
    except ImportError:
        return None
    return torch.get_num_threads()


@pytest.fixture(autouse=True)
def _torch_threads_do_not_leak(_torch_default_threads):
    """An in-process compress with --threads changes torch's thread count for the whole process; float sums
    then differ in the last bits, and tests that compare bytes with the session's tiny run would see it."""
    yield
    if _torch_default_threads is not None:
        import torch

        if torch.get_num_threads() != _torch_default_threads:
            torch.set_num_threads(_torch_default_threads)
