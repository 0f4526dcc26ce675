"""ExecuTorch (.pte, XNNPACK delegate) and LiteRT (.tflite) behind the runtime interface (the `mobile` extra).

They load what the bundle's mobile writers produced (edgekd.bundle.mobile); neither compiles from ONNX. On x86
they run the same file a phone runs, with the same delegate (XNNPACK), so `edgekd bench BUNDLE --target
android-arm64` measures the .pte here as a host measurement beside the arm64 estimate. Static batch 1: a larger
batch is run one sample at a time.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.compat import check_tested
from edgekd.errors import UsageError
from edgekd.runtimes.base import CompiledArtifact, Runtime, RuntimeSettings, Session, check_sha256

check_tested("executorch")  # ExecuTorchRuntime.load resets its private XNNPACK threadpool


class _NoCompile:
    host_stand_in = True
    def compile(self, onnx_path: Path, out_dir: Path, settings: RuntimeSettings) -> CompiledArtifact:
        raise UsageError(f"{self.name} loads the bundle's .{self.suffix} file; it does not compile ONNX (write the "
                         "bundle with edgekd export-bundle and the mobile extra installed)")

    def devices(self) -> list[str]:
        return ["CPU"]


class _OneByOne(Session):
    input_name = "input"

    def __init__(self, path: Path, settings: RuntimeSettings, run_one, facts: dict[str, Any]) -> None:
        self.path, self.settings, self._run_one, self._facts = path, settings, run_one, facts

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        return np.concatenate([self._run_one(x[i:i + 1]) for i in range(len(x))])

    def describe(self) -> dict[str, Any]:
        return {"artifact": str(self.path), "device": "CPU", "precision": self.settings.precision,
                "static_batch": 1, **self._facts}


class ExecuTorchRuntime(_NoCompile, Runtime):
    name = "executorch"
    extra = "mobile"
    library = "executorch.runtime"
    suffix = "pte"

    def load(self, artifact_path: Path, settings: RuntimeSettings, *, expected_sha256: str | None = None
             ) -> Session:
        check_sha256(Path(artifact_path), expected_sha256)
        import executorch
        import torch
        from executorch.runtime import Runtime as ETRuntime

        threads = "XNNPACK threadpool default (one per core)"
        if settings.threads:
            from executorch.extension.pybindings.portable_lib import (
                _threadpool_get_thread_count, _unsafe_reset_threadpool)

            _unsafe_reset_threadpool(settings.threads)  # process-wide, as on a phone app
            threads = _threadpool_get_thread_count()
        t0 = time.perf_counter()
        try:
            method = ETRuntime.get().load_program(str(artifact_path)).load_method("forward")
        except (RuntimeError, ValueError) as exc:
            raise UsageError(f"{artifact_path}: not a loadable ExecuTorch program ({str(exc)[:160]})") from None
        facts = {"runtime": "executorch", "version": getattr(executorch, "__version__", "?"),
                 "delegate": "XNNPACK (as lowered)", "load_s": round(time.perf_counter() - t0, 4),
                 "threads": threads}
        return _OneByOne(artifact_path, settings, lambda x: method.execute([torch.from_numpy(x)])[0].numpy(), facts)


class LiteRTRuntime(_NoCompile, Runtime):
    name = "litert"
    extra = "mobile"
    library = "ai_edge_litert.interpreter"
    suffix = "tflite"

    def load(self, artifact_path: Path, settings: RuntimeSettings, *, expected_sha256: str | None = None
             ) -> Session:
        check_sha256(Path(artifact_path), expected_sha256)
        try:
            run_one = tflite_infer(artifact_path, threads=settings.threads)
        except (RuntimeError, ValueError) as exc:
            raise UsageError(f"{artifact_path}: not a loadable .tflite model ({str(exc)[:160]})") from None
        import ai_edge_litert

        facts = {"runtime": "litert", "version": getattr(ai_edge_litert, "__version__", "?"),
                 "delegate": "XNNPACK (the interpreter's default CPU delegate)", "threads": settings.threads}
        return _OneByOne(artifact_path, settings, run_one, facts)


def tflite_infer(path: Path, threads: int | None = None) -> Any:
    """infer(x) through the LiteRT interpreter; an int8 input is quantized and an int8 output dequantized with
    the model's own scale and zero point (a fully-integer .tflite from litert-torch has int8 I/O)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=threads)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]

    def infer(x: np.ndarray) -> np.ndarray:
        if np.issubdtype(inp["dtype"], np.integer):
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale) + zero, info.min, info.max).astype(inp["dtype"])
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        y = np.array(interp.get_tensor(out["index"]))
        if np.issubdtype(out["dtype"], np.integer):
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * np.float32(scale)
        return y

    return infer


class CoreMLRuntime(_NoCompile, Runtime):
    """Core ML .mlpackage: written on any OS (the bundle's mobile writers), run only on macOS/iOS."""

    name = "coreml"
    extra = "mobile"
    library = "coremltools"
    suffix = "mlpackage"

    @classmethod
    def unavailable_reason(cls) -> str:
        if platform.system() != "Darwin":
            return "Core ML models run only on macOS/iOS"
        return super().unavailable_reason()

    @classmethod
    def available(cls) -> bool:
        return platform.system() == "Darwin" and super().available()

    def load(self, artifact_path: Path, settings: RuntimeSettings, *, expected_sha256: str | None = None
             ) -> Session:
        if not self.available():
            raise UsageError(f"{artifact_path}: {self.unavailable_reason()}")
        import coremltools as ct

        ml = ct.models.MLModel(str(artifact_path))  # a folder: its files are checked by the bundle's hashes
        facts = {"runtime": "coreml", "version": getattr(ct, "__version__", "?")}
        return _OneByOne(Path(artifact_path), settings,
                         lambda x: np.asarray(ml.predict({"input": x})["logits"]), facts)
