"""Inference runtimes behind one interface, looked up by name.

Importing this package imports none of openvino, onnxruntime or tensorrt: each runtime module imports its
library inside the functions that need it, and `get_runtime` imports the runtime module only when asked.
"""

from __future__ import annotations

import importlib

from edgekd.errors import UsageError
from edgekd.runtimes.base import CompiledArtifact, Runtime, RuntimeSettings, Session

# name -> (module, class); the one registry of runtimes
_REGISTRY: dict[str, tuple[str, str]] = {
    "openvino": ("edgekd.runtimes.openvino", "OpenVINORuntime"),
    "onnxruntime": ("edgekd.runtimes.onnxruntime", "OnnxRuntimeRuntime"),
    "tensorrt": ("edgekd.runtimes.tensorrt", "TensorRTRuntime"),
    "executorch": ("edgekd.runtimes.mobile", "ExecuTorchRuntime"),
    "litert": ("edgekd.runtimes.mobile", "LiteRTRuntime"),
    "coreml": ("edgekd.runtimes.mobile", "CoreMLRuntime"),  # runs on macOS/iOS only
}
RUNTIME_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def runtime_class(name: str) -> type[Runtime]:
    """The Runtime class by name, for its facts (extra, preset, NVIDIA GPU, ...); imports no runtime library.
    Unknown names are a UsageError."""
    try:
        module_name, class_name = _REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown runtime '{name}': choose one of {', '.join(RUNTIME_NAMES)}") from None
    return getattr(importlib.import_module(module_name), class_name)


def get_runtime(name: str) -> Runtime:
    """A runtime instance by name ('openvino', 'onnxruntime', 'tensorrt', ...); unknown names are a UsageError."""
    return runtime_class(name)()


__all__ = ["RUNTIME_NAMES", "CompiledArtifact", "Runtime", "RuntimeSettings", "Session", "get_runtime",
           "runtime_class"]
