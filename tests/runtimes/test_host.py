"""What this machine has: installed modules and an NVIDIA GPU (edgekd.runtimes.host), one definition each."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

import edgekd.runtimes.host as host


def test_has_module_finds_without_importing() -> None:
    assert host.has_module("json")
    assert not host.has_module("edgekd_no_such_module")
    assert not host.has_module("edgekd_no_such_package.sub")


@pytest.fixture
def no_tegra(monkeypatch):
    real = Path.exists
    monkeypatch.setattr(Path, "exists", lambda p: False if str(p) == "/etc/nv_tegra_release" else real(p))


def test_nvidia_smi_binary_alone_is_not_a_gpu(monkeypatch, no_tegra) -> None:
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: SimpleNamespace(
        returncode=9, stdout="", stderr="NVIDIA-SMI has failed because it couldn't communicate with the driver"))
    assert not host.nvidia_gpu_here()


def test_nvidia_smi_listing_a_gpu_is_a_gpu(monkeypatch, no_tegra) -> None:
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: SimpleNamespace(
        returncode=0, stdout="GPU 0: NVIDIA H100 (UUID: GPU-0)\n", stderr=""))
    assert host.nvidia_gpu_here()


def test_no_nvidia_smi_and_no_jetson_is_no_gpu(monkeypatch, no_tegra) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert not host.nvidia_gpu_here()


def test_a_jetson_without_nvidia_smi_is_a_gpu(monkeypatch) -> None:
    real = Path.exists
    monkeypatch.setattr(Path, "exists", lambda p: True if str(p) == "/etc/nv_tegra_release" else real(p))
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert host.nvidia_gpu_here()
