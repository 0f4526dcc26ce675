"""ExecuTorch (.pte, XNNPACK delegate) and LiteRT (.tflite) behind the runtime interface (the `mobile` extra).

They load what the bundle's mobile writers produced (edgekd.bundle.mobile); neither compiles from ONNX. On x86
they run the same file a phone runs, with the same delegate (XNNPACK), so `edgekd bench BUNDLE --target
android-arm64` measures the .pte here as a host measurement beside the arm64 estimate. Static batch 1: a larger
batch is run one sample at a time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.compat import check_tested
from edgekd.errors import UsageError
from edgekd.runtimes.base import CompiledArtifact, Runtime, RuntimeSettings, Session

check_tested("executorch")  # ExecuTorchRuntime.load resets its private XNNPACK threadpool


class _NoCompile:
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

    def load(self, artifact_path: Path, settings: RuntimeSettings) -> Session:
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

    def load(self, artifact_path: Path, settings: RuntimeSettings) -> Session:
        from edgekd.bundle.verify import _tflite

        try:
            run_one = _tflite(artifact_path, threads=settings.threads)
        except (RuntimeError, ValueError) as exc:
            raise UsageError(f"{artifact_path}: not a loadable .tflite model ({str(exc)[:160]})") from None
        import ai_edge_litert

        facts = {"runtime": "litert", "version": getattr(ai_edge_litert, "__version__", "?"),
                 "delegate": "XNNPACK (the interpreter's default CPU delegate)", "threads": settings.threads}
        return _OneByOne(artifact_path, settings, run_one, facts)
