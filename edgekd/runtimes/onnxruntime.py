"""ONNX Runtime runtime: provider choice from the device, pinned threads, sequential execution.

Devices: CPU -> CPUExecutionProvider, XNNPACK -> XnnpackExecutionProvider, CUDA -> CUDAExecutionProvider,
TensorRT -> TensorrtExecutionProvider (fp16 / int8 flags, engine and timing caches on disk). GPU providers
come from onnxruntime-gpu (`pip install 'edgekd[gpu]'`); a provider missing from this onnxruntime is a
UsageError naming it, never a silent fall back to CPU.

ONNX Runtime runs the graph's own types: int8 means running the QDQ graph (the CPU provider fuses Q/DQ into
integer kernels), fp16 on CPU/CUDA needs an fp16 graph. Only the TensorRT provider converts precision itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import UsageError, require
from edgekd.runtimes.base import (
    CompiledArtifact, Runtime, RuntimeSettings, Session, checked_model_file, onnx_is_quantized, read_onnx,
    unreadable_model,
)  # fmt: skip

PROVIDERS = {
    "CPU": "CPUExecutionProvider",
    "XNNPACK": "XnnpackExecutionProvider",
    "CUDA": "CUDAExecutionProvider",
    "TensorRT": "TensorrtExecutionProvider",
}
_GPU_DEVICES = {"CUDA", "TensorRT"}
_UNREADABLE = ("InvalidProtobuf", "InvalidGraph", "NoSuchFile")  # ORT's errors for a file it cannot parse
_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def _ort(why: str = "") -> Any:
    return require("onnxruntime", "cpu", why)


def _device_key(device: str) -> str:
    for key in PROVIDERS:
        if key.lower() == device.lower():
            return key
    raise UsageError(f"unknown ONNX Runtime device '{device}': choose one of {', '.join(PROVIDERS)}")


def _level(ort: Any, name: str) -> Any:
    if name not in _LEVELS:
        raise UsageError(f"unknown graph optimisation level '{name}': choose one of {', '.join(_LEVELS)}")
    return getattr(ort.GraphOptimizationLevel, _LEVELS[name])


def providers_for(settings: RuntimeSettings, cache_dir: Path | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Provider list (name, options), most preferred first, for settings.device; checks availability."""
    ort = _ort("to run ONNX models")
    key = _device_key(settings.device)
    wanted = PROVIDERS[key]
    available = ort.get_available_providers()
    if wanted not in available:
        hint = " install it with pip install 'edgekd[gpu]'" if key in _GPU_DEVICES else ""
        raise UsageError(
            f"ONNX Runtime provider {wanted} is not available in this onnxruntime "
            f"(available: {', '.join(available)});{hint or ' use another device'}"
        )
    chain: list[tuple[str, dict[str, Any]]] = []
    if key == "TensorRT":
        cache = Path(settings.extra.get("trt_engine_cache_path") or cache_dir or "trt_cache")
        cache.mkdir(parents=True, exist_ok=True)
        chain.append(
            (
                wanted,
                {
                    "device_id": int(settings.extra.get("device_id", 0)),
                    "trt_fp16_enable": settings.precision in ("fp16", "int8"),
                    "trt_int8_enable": settings.precision == "int8",
                    "trt_max_workspace_size": int(settings.workspace_mb) * (1 << 20),
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(cache),
                    "trt_timing_cache_enable": True,
                    "trt_timing_cache_path": str(cache),
                    **({"trt_dla_enable": True, "trt_dla_core": settings.dla_core} if settings.dla_core is not None else {}),
                },
            )
        )
        if "CUDAExecutionProvider" in available:
            chain.append(("CUDAExecutionProvider", {"device_id": int(settings.extra.get("device_id", 0))}))
    elif key == "CUDA":
        chain.append((wanted, {"device_id": int(settings.extra.get("device_id", 0))}))
    elif key == "XNNPACK":
        chain.append((wanted, {"intra_op_num_threads": int(settings.threads or 1)}))
    if key != "CPU":
        chain.append(("CPUExecutionProvider", {}))  # ops the accelerator cannot take; describe() shows it
    else:
        chain.append((wanted, {}))
    return chain


def session_options(settings: RuntimeSettings, optimized_out: Path | None = None, ort_format: bool = False) -> Any:
    ort = _ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = _level(ort, settings.graph_optimization)
    so.intra_op_num_threads = int(settings.threads or 0)  # 0: ORT default (one per physical core)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    if optimized_out is not None:
        so.optimized_model_filepath = str(optimized_out)
        if ort_format:
            so.add_session_config_entry("session.save_model_format", "ORT")
    return so


def _graph_facts(path: Path) -> dict[str, bool]:
    """Whether the graph holds Q/DQ nodes and float16 tensors (ORT format files are not inspected)."""
    if path.suffix == ".ort":
        return {"qdq": True, "fp16": True}
    import onnx

    model = read_onnx(path)
    fp16 = any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer) or any(
        v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 for v in model.graph.input
    )
    return {"qdq": onnx_is_quantized(model), "fp16": fp16}


def _check_precision(settings: RuntimeSettings, path: Path) -> None:
    if settings.precision not in ("fp32", "fp16", "int8"):
        raise UsageError(f"unknown precision '{settings.precision}' for ONNX Runtime: choose fp32, fp16 or int8")
    if _device_key(settings.device) == "TensorRT" or settings.precision == "fp32":
        return
    facts = _graph_facts(path)
    if settings.precision == "int8" and not facts["qdq"]:
        raise UsageError(
            f"precision int8 asked but {path.name} has no QuantizeLinear/DequantizeLinear nodes: ONNX Runtime "
            "would run it in float; pass the QDQ model or ask for fp32"
        )
    if settings.precision == "fp16" and not facts["fp16"]:
        raise UsageError(
            f"precision fp16 asked but {path.name} is a float32 graph: ONNX Runtime on {settings.device} runs the "
            "graph's own types; convert it to fp16 first or ask for fp32"
        )


class OnnxRuntimeSession(Session):
    def __init__(self, path: Path, settings: RuntimeSettings) -> None:
        ort = _ort("to run ONNX models")
        self.path = path
        self.settings = settings
        self._ort = ort
        providers = providers_for(settings, cache_dir=path.parent / "trt_cache")
        so = session_options(settings)
        if path.suffix == ".ort":
            so.add_session_config_entry("session.load_model_format", "ORT")
        self._requested = [p for p, _ in providers]
        try:
            self._sess = ort.InferenceSession(str(path), sess_options=so, providers=[p for p, _ in providers],
                                              provider_options=[o for _, o in providers])
        except Exception as exc:
            if type(exc).__name__ in _UNREADABLE or any(s in str(exc) for s in ("Load model", "model verification")):
                raise unreadable_model(path, exc, "ORT-format" if path.suffix == ".ort" else "ONNX") from None
            raise
        self._options = so
        self.input_name = self._sess.get_inputs()[0].name
        self._output_name = self._sess.get_outputs()[0].name

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self._sess.run([self._output_name], {self.input_name: batch})[0]

    def describe(self) -> dict[str, Any]:
        so = self._sess.get_session_options()
        threads = so.intra_op_num_threads
        used = self._sess.get_providers()
        return {
            "runtime": "onnxruntime",
            "version": self._ort.__version__,
            "artifact": str(self.path),
            "device": self.settings.device,
            "precision": self.settings.precision,
            "providers_requested": self._requested,
            "providers": used,
            "provider_options": {k: {kk: str(vv) for kk, vv in v.items()} for k, v in self._sess.get_provider_options().items()},
            "threads": threads if threads > 0 else f"default (0: one per physical core; {os.cpu_count()} logical CPUs)",
            "intra_op_num_threads": threads,
            "inter_op_num_threads": so.inter_op_num_threads,
            "execution_mode": str(so.execution_mode).split(".")[-1],
            "graph_optimization_level": str(so.graph_optimization_level).split(".")[-1],
            "inference": "one synchronous InferenceSession.run",
        }


def to_ort_format(onnx_path: Path | str, out_path: Path | str, level: str = "extended") -> Path:
    """Write an ORT-format (.ort) model: the graph optimised at `level` with the CPU provider, then serialised.

    'extended' (default) keeps the file portable across CPUs; 'all' adds layout optimisations that tie it to
    this machine's instruction set.
    """
    ort = _ort("to write ORT-format models")
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if out_path.suffix != ".ort":
        raise UsageError(f"an ORT-format file must end in .ort, got '{out_path.name}'")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    so = session_options(RuntimeSettings(graph_optimization=level), optimized_out=out_path, ort_format=True)
    ort.InferenceSession(str(onnx_path), sess_options=so, providers=["CPUExecutionProvider"])
    if not out_path.is_file():  # pragma: no cover - ORT failed silently
        raise UsageError(f"ONNX Runtime did not write {out_path}")
    return out_path


class OnnxRuntimeRuntime(Runtime):
    name = "onnxruntime"
    extra = "cpu"
    library = "onnxruntime"

    @classmethod
    def extra_for(cls, device: str) -> str:
        return "gpu" if device in _GPU_DEVICES else "cpu"  # onnxruntime-gpu

    @classmethod
    def needs_nvidia_gpu(cls, device: str) -> bool:
        return device in _GPU_DEVICES

    @classmethod
    def runs_on_host_cpu(cls, device: str) -> bool:
        return device == "CPU"

    @classmethod
    def quant_preset(cls, device: str) -> str:
        return "trt" if device == "TensorRT" else "mixed"  # ORT's TensorRT provider builds a TensorRT engine

    @classmethod
    def usable_here(cls, device: str) -> bool:
        from edgekd.runtimes.host import has_module

        return has_module("onnxruntime") and PROVIDERS.get(device) in _ort().get_available_providers()


    def devices(self) -> list[str]:
        available = set(_ort().get_available_providers())
        return [d for d, p in PROVIDERS.items() if p in available]

    def compile(self, onnx_path: Path, out_dir: Path, settings: RuntimeSettings) -> CompiledArtifact:
        """Write the graph as ONNX Runtime optimises it (CPU provider, settings.graph_optimization).

        settings.extra['format'] = 'ort' writes an ORT-format file instead of ONNX. For CUDA/TensorRT devices
        the level is capped at 'extended': 'all' adds CPU-specific layouts that a GPU provider cannot use.
        """
        ort = _ort("to optimise ONNX models")
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise UsageError(f"ONNX file not found: {onnx_path}")
        _check_precision(settings, onnx_path)
        level = settings.graph_optimization
        _level(ort, level)
        if _device_key(settings.device) != "CPU" and level == "all":
            level = "extended"
        fmt = str(settings.extra.get("format", "onnx"))
        if fmt not in ("onnx", "ort"):
            raise UsageError(f"unknown ONNX Runtime format '{fmt}': choose onnx or ort")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / f"{onnx_path.stem}.opt.{fmt}"
        if fmt == "ort":
            to_ort_format(onnx_path, out, level)
        else:
            so = session_options(RuntimeSettings(graph_optimization=level, threads=settings.threads), optimized_out=out)
            ort.InferenceSession(str(onnx_path), sess_options=so, providers=["CPUExecutionProvider"])
        return CompiledArtifact(
            path=out,
            kind="ort_model",
            files=(out,),
            facts={
                "onnxruntime_version": ort.__version__,
                "format": fmt,
                "graph_optimization": level,
                "hardware_specific": level == "all",
                "precision": settings.precision,
            },
        )

    def load(self, artifact_path: Path, settings: RuntimeSettings, *, expected_sha256: str | None = None
             ) -> OnnxRuntimeSession:
        path = checked_model_file(artifact_path, (".onnx", ".ort"), "ONNX Runtime loads .onnx or .ort files",
                                  expected_sha256)
        _check_precision(settings, path)
        return OnnxRuntimeSession(path, settings)
