"""What this machine can run: decides between measuring on the target and estimating for it."""

from __future__ import annotations

import importlib.util
import platform


def _has(module: str) -> bool:
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
    if runtime == "openvino":
        if not _has("openvino"):
            return False
        if device == "CPU":
            return True
        import openvino as ov

        return device in ov.Core().available_devices
    if runtime == "onnxruntime":
        if not _has("onnxruntime"):
            return False
        import onnxruntime as ort

        wanted = {"CPU": "CPUExecutionProvider", "XNNPACK": "XnnpackExecutionProvider",
                  "CUDA": "CUDAExecutionProvider", "TensorRT": "TensorrtExecutionProvider"}.get(device)
        return wanted in ort.get_available_providers()
    if runtime == "tensorrt":
        return _has("tensorrt") and _has("torch") and _cuda()
    return False


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())
