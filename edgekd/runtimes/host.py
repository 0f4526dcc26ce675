"""What this machine can run: decides between measuring on the target and estimating for it."""

from __future__ import annotations

import importlib.util
import platform


def has_module(module: str) -> bool:
    """Whether `module` is installed here, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def host_can_run(runtime: str, device: str, arch: str) -> bool:
    """True when the target's runtime, device and CPU architecture are all present here.

    Only CPU devices of the host's architecture count as measurable without asking the runtime; a GPU/NPU
    device is measurable when the runtime lists it (that asks the runtime, so it imports it).
    """
    if arch not in (host_arch(), "any"):
        return False
    from edgekd.runtimes import runtime_class

    return runtime_class(runtime).usable_here(device)  # each runtime answers for itself


def nvidia_gpu_here() -> bool:
    """Whether this machine has an NVIDIA GPU: a Jetson (its /etc/nv_tegra_release: before JetPack 6
    a Jetson has no `nvidia-smi`),
    or a driver that lists a GPU in `nvidia-smi -L`. The `nvidia-smi` binary alone is not enough: containers and
    driver packages ship it on machines without a GPU. No torch needed: a device may have only TensorRT."""
    import shutil
    import subprocess
    from pathlib import Path

    if Path("/etc/nv_tegra_release").exists():
        return True
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout
