"""One interface for every inference runtime: compile, load, infer, describe.

A runtime turns an ONNX file (or a runtime-native artifact) into something it can execute, loads it into a
`Session`, and runs numpy batches through it. Runtimes import their library lazily so that importing this
module never pulls in openvino, onnxruntime or tensorrt.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RuntimeSettings:
    """Settings a runtime honours; those it cannot honour it records in `Session.describe()`."""

    device: str = "CPU"  # OpenVINO: CPU/GPU/NPU; ORT: CPU/CUDA/TensorRT; TensorRT: GPU
    precision: str = "fp32"  # fp32 | fp16 | int8 (int8 means: run the QDQ / FakeQuantize graph in int8)
    threads: int | None = None  # None: runtime default; recorded in describe()
    streams: int = 1
    batch: int = 1  # the batch the session is built/optimised for (OpenVINO static shape, TensorRT opt profile)
    performance_hint: str = "LATENCY"
    graph_optimization: str = "all"  # ORT: disable | basic | extended | all
    workspace_mb: int = 1024  # TensorRT
    dla_core: int | None = None  # TensorRT
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CompiledArtifact:
    """What `Runtime.compile` wrote: the main file, companion files, and format facts for the manifest."""

    path: Path
    kind: str  # onnx | openvino_ir | trt_engine | ort_model
    files: tuple[Path, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)


class Session(ABC):
    """A loaded, ready-to-run model."""

    input_name: str

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch (N, C, H, W float32) and return the first output as a numpy array."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Runtime, version, device, precision actually used, threads, and other facts for the report."""


class Runtime(ABC):
    """A runtime backend. Subclasses set `name` and `extra` (the pip extra that provides the library)."""

    name: str
    extra: str
    library: str  # the Python module the runtime needs

    @classmethod
    def available(cls) -> bool:
        """True when the runtime's library imports on this machine (never raises)."""
        try:
            importlib.import_module(cls.library)
        except Exception:
            return False
        return True

    @abstractmethod
    def devices(self) -> list[str]:
        """Devices this runtime can use on this machine (e.g. ['CPU'])."""

    @abstractmethod
    def compile(self, onnx_path: Path, out_dir: Path, settings: RuntimeSettings) -> CompiledArtifact:
        """Build the runtime's artifact from an ONNX file into out_dir."""

    @abstractmethod
    def load(self, artifact_path: Path, settings: RuntimeSettings) -> Session:
        """Load a compiled artifact (or an ONNX file directly where the runtime accepts one)."""
