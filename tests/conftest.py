"""Shared fixtures: one tiny end-to-end run of `compress` on the embedded digits, built once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
# A run on a user's folder without a teacher asks the weights' host whether it answers
# (edgekd.teacher_choice): never from the tests.
os.environ.setdefault("EDGEKD_OFFLINE", "1")

# An explicit student: the session's shared run exercises every other stage; the search has its own tests
# (tests/search/test_search_e2e.py).
TINY = dict(student="small_cnn", teacher_epochs=1, finetune_epochs=1, probe_epochs=0, distill_epochs=2, qad_epochs=1, calib_size=64,
            max_fallback_layers=0)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run directory (intel-cpu target) with every stage, from tiny epochs; do not modify it."""
    pytest.importorskip("torch")
    pytest.importorskip("openvino")
    import edgekd

    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    edgekd.compress(**TINY, run_dir=run_dir, bundle=False)
    assert (run_dir / "report.json").is_file()
    return run_dir


@pytest.fixture(scope="session")
def _tiny_variant(tiny_run, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A copy of the tiny run rerun with temperature 2 (distill and every later stage rerun, NNCF calibration
    included, the earlier report moved to history/) by a real `edgekd compress --json` process: one variant per
    session, for the JSON-stdout test (its output) and the rerun and report-history tests (its stages)."""
    import shutil

    import yaml

    import edgekd

    run_dir = tmp_path_factory.mktemp("tiny-t2") / "run"
    shutil.copytree(tiny_run, run_dir)
    config = run_dir.parent / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    root = str(Path(edgekd.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run(
        [sys.executable, "-m", "edgekd", "compress", "--config", str(config), "--temperature", "2",
         "--run-dir", str(run_dir), "--json", "--no-bundle", "--threads", "1"],
        capture_output=True, text=True, env=env, timeout=1500)
    return run_dir, proc


@pytest.fixture(scope="session")
def tiny_variant(_tiny_variant) -> Path:
    """The temperature-2 variant's run directory (see _tiny_variant); do not modify it."""
    run_dir, proc = _tiny_variant
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="session")
def tiny_variant_process(_tiny_variant) -> subprocess.CompletedProcess:
    """The `edgekd compress --json` process that made the temperature-2 variant (stdout, stderr, exit code)."""
    return _tiny_variant[1]


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


HOSTS = Path(__file__).resolve().parent / "fixtures" / "hosts"


@pytest.fixture
def as_host(monkeypatch):
    """Make edgekd read the host facts recorded under tests/fixtures/hosts/NAME (intel-xeon, amd-epyc,
    raspberry-pi5) instead of this machine's: for tests whose outcome depends on which device the host is.
    `as_host("intel-xeon")` returns the folder; the whole suite can also run as one host with
    EDGEKD_HOST_ROOT=tests/fixtures/hosts/NAME."""

    def force(name: str) -> Path:
        root = HOSTS / name
        assert (root / "proc" / "cpuinfo").is_file(), f"no recorded host {name} in {HOSTS}"
        monkeypatch.setenv("EDGEKD_HOST_ROOT", str(root))
        return root

    return force
