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

from edgekd.errors import UsageError
from edgekd.onnxfacts import INTEGER_KERNELS, QDQ_OPS


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
    """A runtime backend. Subclasses set `name` and `extra` (the pip extra that provides the library).

    Every fact that depends on which runtime (and device) it is lives here, answered by each runtime's class
    (NNCF's backend pattern): callers ask the class (`edgekd.runtimes.runtime_class(name)`) and never compare
    runtime names. The class methods import nothing heavy, except `usable_here`, which may ask the library.
    """

    name: str
    extra: str
    library: str  # the Python module the runtime needs
    converts_to_fp16: bool = False  # runs an fp32 model at fp16 when asked (OpenVINO, TensorRT)
    # runs the device's own file on this machine's CPU with the kernels the device uses (ExecuTorch and LiteRT with
    # XNNPACK; Core ML's file is the phone's too): a measurement here is the same runtime, a "host" measurement
    host_stand_in: bool = False

    @classmethod
    def unavailable_reason(cls) -> str:
        """Why `available()` is False here, in one line naming what to install."""
        return f"{cls.package()} is not installed here (pip install 'edgekd[{cls.extra}]')"

    @classmethod
    def package(cls) -> str:
        """The top-level module to look for (has_module) and to name when it is missing."""
        return cls.library.split(".")[0]

    @classmethod
    def extra_for(cls, device: str) -> str:
        """The pip extra that brings this runtime for `device`."""
        return cls.extra

    @classmethod
    def needs_nvidia_gpu(cls, device: str) -> bool:
        """Whether running on `device` needs an NVIDIA GPU (TensorRT; ONNX Runtime's CUDA and TensorRT)."""
        return False

    @classmethod
    def runs_on_host_cpu(cls, device: str) -> bool:
        """Whether `device` is a CPU this machine's own runtime can stand for (OpenVINO or ONNX Runtime on CPU)."""
        return False

    @classmethod
    def quant_preset(cls, device: str) -> str:
        """NNCF's preset for the INT8 models this runtime runs on `device`: 'mixed' (unsigned activations after
        ReLU, what ONNX Runtime's and OpenVINO's real INT8 kernels take); 'trt' for TensorRT's explicit
        quantization, which wants symmetric signed activations."""
        return "mixed"

    @classmethod
    def usable_here(cls, device: str) -> bool:
        """Whether this runtime and `device` work on this machine (the caller checks the CPU architecture)."""
        return False

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
    def load(self, artifact_path: Path, settings: RuntimeSettings, *, expected_sha256: str | None = None
             ) -> Session:
        """Load a compiled artifact (or an ONNX file directly where the runtime accepts one); with
        `expected_sha256`, refuse (UsageError) a file whose sha256 differs before the runtime reads it."""


def checked_model_file(artifact_path: Path | str, suffixes: tuple[str, ...], loads: str,
                       expected_sha256: str | None) -> Path:
    """The file a runtime's `load` was given, checked in order: its suffix (`loads` says what the runtime
    takes), that it exists, and its sha256 when the manifest recorded one."""
    path = Path(artifact_path)
    if path.suffix not in suffixes:
        raise UsageError(f"{loads}, not '{path.name}'")
    if not path.is_file():
        raise UsageError(f"model file not found: {path}")
    check_sha256(path, expected_sha256)
    return path


def check_sha256(path: Path, expected_sha256: str | None) -> None:
    """The integrity check every runtime's `load` does first when given the sha256 a manifest recorded."""
    if expected_sha256 is None:
        return
    from edgekd.fsio import sha256_file

    actual = sha256_file(path)
    if actual.lower() != expected_sha256.lower():
        raise UsageError(f"{path}: sha256 {actual[:12]}... does not match the recorded {expected_sha256[:12]}...: "
                         "the file changed after it was written")


def unreadable_model(path: Path, exc: BaseException, what: str) -> UsageError:
    """The one message for a model file a parser or runtime cannot read (a text file named .onnx, a truncated
    download, an IR whose .bin does not match): exit 2 naming the file, never the library's traceback."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("Exception from")]
    reason = (lines[-1] if lines else type(exc).__name__)[:160]
    return UsageError(f"{path}: not a readable {what} model ({reason}); pass a model file edgekd export or "
                      "compile wrote, or re-export it")


def read_onnx(path: Path | str) -> Any:
    """onnx.load without external data; a file that is not an ONNX protobuf is a UsageError naming it."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, or onnx's own errors on a damaged file
        raise unreadable_model(Path(path), exc, "ONNX") from None




def onnx_is_quantized(model: Any, integer_kernels: bool = True) -> bool:
    """Whether an ONNX graph (a ModelProto, or a path read with `read_onnx`) is quantized: it holds
    QuantizeLinear/DequantizeLinear nodes (the QDQ form edgekd exports) or, with `integer_kernels`, integer
    kernels (QLinearConv, ...) as ONNX Runtime's own quantizer writes them. TensorRT reads the QDQ form only."""
    if not hasattr(model, "graph"):
        model = read_onnx(model)
    ops = {n.op_type for n in model.graph.node}
    return bool(ops & ((QDQ_OPS | INTEGER_KERNELS) if integer_kernels else QDQ_OPS))
