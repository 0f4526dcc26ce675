"""TensorRT runtime (TensorRT 10 Python API): ONNX -> serialized engine (.plan) -> execute_async_v3.

UNVERIFIED here (no NVIDIA GPU with TensorRT): written against the documented TensorRT 10 API. Tested without
a GPU: the build plan (`plan_build`), fingerprint comparison and message, sha256 refusal, MissingExtra.

- Explicit batch, one optimisation profile per input: min 1, opt settings.batch, max extra['max_batch']
  (default 4 x batch); DLA engines get a fixed batch (DLA has no dynamic shapes).
- fp16 -> FP16 flag. int8 only by explicit quantization from a QDQ graph: INT8 + FP16 flags (un-quantized
  layers in fp16, like `trtexec --int8 --fp16`); no calibrators. A QDQ graph asked for fp32/fp16, or int8
  without Q/DQ nodes, is a UsageError, never a mislabelled engine. fp32 leaves TF32 at its default (on).
- Workspace via set_memory_pool_limit(WORKSPACE); timing cache read from / written to `timing.cache` beside
  the engine (extra['timing_cache'] overrides).
- `<engine>.fingerprint.json` records GPU, compute capability and TensorRT version (an engine runs only
  where it was built) plus the engine's sha256; load() refuses a mismatch, and an engine whose sha256 differs
  from `expected_sha256` (engines are executables: only load what the manifest vouches for).
- Device buffers: cuda-python (`cuda.bindings.runtime`, or `cuda.cudart` in older releases), as in NVIDIA's
  TensorRT samples; no torch needed on the device. Host buffers are pageable numpy arrays. cuda-python is
  not in the `gpu` extra's list yet: a missing one raises MissingExtra naming it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgekd.errors import MissingExtra, StageFailed, UsageError, require
from edgekd.fsio import sha256_file
from edgekd.runtimes.base import (
    CompiledArtifact, Runtime, RuntimeSettings, Session, onnx_is_quantized,
)  # fmt: skip

COMPILE_HINT = "`edgekd compile BUNDLE_OR_RUN --target TARGET`"
FINGERPRINT_KEYS = ("gpu_name", "compute_capability", "tensorrt_version")  # a mismatch refuses the engine


@dataclass(frozen=True)
class ProfileShape:
    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class BuildPlan:
    """Every decision of an engine build, made without tensorrt so it can be tested anywhere."""

    precision: str
    flags: tuple[str, ...]  # trt.BuilderFlag member names
    workspace_bytes: int
    profiles: tuple[ProfileShape, ...]
    explicit_quantization: bool
    dla_core: int | None = None
    default_device: str = "GPU"  # GPU | DLA
    optimization_level: int = 3
    notes: tuple[str, ...] = field(default_factory=tuple)
    strongly_typed: bool = False  # TensorRT 11: always (precision comes from the graph); BuilderFlag.FP16/INT8 gone


def plan_build(
    settings: RuntimeSettings, onnx_has_qdq: bool, inputs: Mapping[str, Sequence[int]] | None = None,
    trt_major: int = 10,
) -> BuildPlan:
    """Decide flags, memory pools and profile shapes. `inputs`: name -> dims with -1 for dynamic ones.

    TensorRT 11 removed BuilderFlag.FP16/INT8 (weak typing): every network is strongly typed, int8 comes from the
    graph's Q/DQ nodes and fp16 needs an fp16 graph (NVIDIA's migration guide: ModelOpt AutoCast); on 10.x the
    flags are used as `trtexec --int8 --fp16` does."""
    precision = settings.precision
    strong = trt_major >= 11
    if strong and precision == "fp16":
        raise UsageError("TensorRT 11 builds strongly typed networks only (BuilderFlag.FP16 was removed): convert "
                         "the ONNX to fp16 first (NVIDIA ModelOpt AutoCast), or build int8 from the QDQ model or fp32")
    batch = int(settings.batch)
    if batch < 1:
        raise UsageError(f"batch must be >= 1, got {batch}")
    notes: list[str] = []
    flags: list[str] = []
    if precision == "fp32":
        notes.append("fp32: TF32 left at TensorRT's default (enabled) for matmul/conv")
    elif precision == "fp16":
        flags.append("FP16")
    elif precision == "int8":
        if not onnx_has_qdq:
            raise UsageError("int8 on TensorRT needs a QDQ graph (explicit quantization) and this ONNX has no "
                             "QuantizeLinear/DequantizeLinear nodes: export the QAD stage's QDQ model, or ask for fp16")
        if strong:
            notes.append("int8 by explicit quantization from the graph's Q/DQ nodes; strongly typed: other layers "
                         "run in the graph's fp32")
        else:
            flags += ["INT8", "FP16"]
            notes.append("int8 by explicit quantization from the graph's Q/DQ nodes; other layers may run in fp16")
    else:
        raise UsageError(f"unknown precision '{precision}' for TensorRT: choose fp32, fp16 or int8")
    if onnx_has_qdq and precision != "int8":
        raise UsageError(f"this ONNX is quantized (Q/DQ nodes) but precision {precision} was asked: "
                         "ask for int8, or pass the float model")

    device = "GPU"
    if settings.dla_core is not None:
        if precision == "fp32":
            raise UsageError("DLA runs fp16 or int8 only: ask for fp16 or int8 with dla_core set")
        if settings.dla_core < 0:
            raise UsageError(f"dla_core must be >= 0, got {settings.dla_core}")
        device = "DLA"
        flags.append("GPU_FALLBACK")
        notes.append(f"DLA core {settings.dla_core}; layers DLA cannot run fall back to the GPU")

    max_batch = int(settings.extra.get("max_batch", 4 * batch))
    if max_batch < batch:
        raise UsageError(f"max_batch ({max_batch}) is smaller than batch ({batch})")
    if device == "DLA":
        max_batch = batch
        notes.append("DLA has no dynamic shapes: batch fixed to settings.batch")

    profiles = []
    for name, dims in (inputs or {}).items():
        dims = [int(d) for d in dims]
        if any(d < 0 for d in dims[1:]):
            raise UsageError(f"input '{name}' has dynamic dims beyond the batch {dims}: export a fixed input size")
        if not dims:
            continue
        if dims[0] >= 0:  # static batch in the graph
            if dims[0] != batch:
                raise UsageError(f"input '{name}' has a fixed batch of {dims[0]} but batch {batch} was asked: "
                                 "re-export the ONNX with a dynamic batch dimension")
            shape = tuple(dims)
            profiles.append(ProfileShape(name, shape, shape, shape))
            continue
        rest = tuple(dims[1:])
        lo = batch if device == "DLA" else 1
        profiles.append(ProfileShape(name, (lo, *rest), (batch, *rest), (max_batch, *rest)))

    return BuildPlan(precision, tuple(flags), int(settings.workspace_mb) * (1 << 20), tuple(profiles),
                     precision == "int8", settings.dla_core, device,
                     int(settings.extra.get("builder_optimization_level", 3)), tuple(notes), strong)


def onnx_has_qdq(onnx_path: Path | str) -> bool:
    """Q/DQ nodes, the only quantized form TensorRT reads (explicit quantization)."""
    return onnx_is_quantized(onnx_path, integer_kernels=False)


def fingerprint_path(engine_path: Path | str) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".fingerprint.json")


# ----------------------------------------------------------------------------------------------- fingerprint
def _cudart() -> Any | None:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]  # older cuda-python
        except ImportError:
            return None
    return cudart


def _nvidia_smi(device_id: int) -> dict[str, Any]:
    if (exe := shutil.which("nvidia-smi")) is None:
        return {}
    query = [exe, f"--id={device_id}", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=20, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    parts = [p.strip() for p in out.splitlines()[0].split(",")] if out else []
    if len(parts) < 3:
        return {}
    return {"gpu_name": parts[0], "compute_capability": parts[1], "driver_version": parts[2], "source": "nvidia-smi"}


def trt_fingerprint(device_id: int = 0) -> dict[str, Any]:
    """GPU name, compute capability, TensorRT and CUDA versions of this machine (None where unknown)."""
    keys = ("gpu_name", "compute_capability", "tensorrt_version", "driver_version", "cuda_driver_version",
            "cuda_runtime_version", "source")
    fp: dict[str, Any] = dict.fromkeys(keys)
    try:
        import tensorrt as trt

        fp["tensorrt_version"] = trt.__version__
    except ImportError:
        pass
    cudart = _cudart()
    if cudart is not None:
        try:
            err, props = cudart.cudaGetDeviceProperties(device_id)
            if int(err) == 0:
                name = props.name
                fp["gpu_name"] = (name.decode() if isinstance(name, bytes) else str(name)).rstrip("\x00")
                fp["compute_capability"] = f"{props.major}.{props.minor}"
                fp["source"] = "cuda-python"
            err, drv = cudart.cudaDriverGetVersion()
            if int(err) == 0:
                fp["cuda_driver_version"] = f"{drv // 1000}.{drv % 1000 // 10}"
            err, rt = cudart.cudaRuntimeGetVersion()
            if int(err) == 0:
                fp["cuda_runtime_version"] = f"{rt // 1000}.{rt % 1000 // 10}"
        except Exception:  # pragma: no cover - needs a GPU
            pass
    if fp["gpu_name"] is None or fp["driver_version"] is None:
        for k, v in _nvidia_smi(device_id).items():
            if fp.get(k) is None:
                fp[k] = v
    return fp


def _short(fp: Mapping[str, Any], other: Mapping[str, Any]) -> str:
    name = str(fp.get("gpu_name") or "unknown GPU").removeprefix("NVIDIA ")
    cc = fp.get("compute_capability")
    sm = f"sm_{str(cc).replace('.', '')}" if cc else "sm_?"
    ver = str(fp.get("tensorrt_version") or "?")
    other_ver = str(other.get("tensorrt_version") or "?")
    if ver.split(".")[:2] != other_ver.split(".")[:2]:
        ver = ".".join(ver.split(".")[:2])
    return f"{name} ({sm}, TensorRT {ver})"


def _norm(key: str, value: Any) -> Any:
    """GPU names compare without vendor prefix, case or suffixes like ' (nvgpu)' (sources spell them apart)."""
    if key != "gpu_name" or value is None:
        return value
    return str(value).lower().removeprefix("nvidia ").split(" (")[0].strip()


def compare_fingerprints(stored: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """None when the engine can run here, else the one-line reason (GPU model, compute capability, TRT version)."""
    differs = [k for k in FINGERPRINT_KEYS if _norm(k, stored.get(k)) != _norm(k, current.get(k))]
    if not differs:
        return None
    return (f"engine built for {_short(stored, current)} cannot run on {_short(current, stored)}: "
            f"rebuild it here with {COMPILE_HINT}")


def verify_engine(
    engine_path: Path | str, expected_sha256: str | None = None, current: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Refuse an engine that the manifest does not vouch for or that was built elsewhere; return its record.

    Checks, in order: the sha256 against `expected_sha256` (when given) and against the sha256 recorded at
    build time; then (when `current` is given) the stored fingerprint against `current`.
    """
    path = Path(engine_path)
    if not path.is_file():
        raise UsageError(f"TensorRT engine not found: {path}")
    actual = sha256_file(path)
    if expected_sha256 is not None and actual.lower() != expected_sha256.lower():
        raise UsageError(f"refusing to load {path.name}: its sha256 {actual[:12]}... does not match the manifest's "
                         f"{expected_sha256[:12]}... (engines are executables: only load what the manifest vouches for)")
    fp_file = fingerprint_path(path)
    if not fp_file.is_file():
        raise UsageError(f"refusing to load {path.name}: no {fp_file.name} beside it; rebuild it here with {COMPILE_HINT}")
    try:
        record = json.loads(fp_file.read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            raise ValueError(f"a JSON {type(record).__name__}, not an object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"refusing to load {path.name}: {fp_file.name} is not a readable fingerprint ({exc}); "
                         f"rebuild the engine here with {COMPILE_HINT}") from None
    recorded = record.get("engine_sha256")
    if recorded and recorded != actual:
        raise UsageError(f"refusing to load {path.name}: it changed after it was built (sha256 differs from {fp_file.name})")
    if current is not None:
        reason = compare_fingerprints(record.get("environment", {}), current)
        if reason:
            raise UsageError(reason)
    return record


# ----------------------------------------------------------------------------------------------- runtime
def _trt(why: str) -> Any:
    return require("tensorrt", "gpu", why)


def _cuda_or_raise() -> Any:
    if (cudart := _cudart()) is None:
        raise MissingExtra("cuda-python", "gpu", "device buffers for TensorRT inference")
    return cudart


def _ck(result: Any) -> Any:
    """Unwrap a cuda-python (err, *values) tuple, raising on error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise StageFailed(f"CUDA call failed: {err}")
    return values[0] if len(values) == 1 else (values or None)


class TensorRTSession(Session):
    """One engine, one execution context, one CUDA stream; buffers grow as needed and are reused."""

    def __init__(self, path: Path, engine_bytes: bytes, record: dict[str, Any], settings: RuntimeSettings) -> None:
        trt = _trt("to run TensorRT engines")
        self._cudart = _cuda_or_raise()
        self._trt, self.path, self.settings, self.record = trt, path, settings, record
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if settings.dla_core is not None:
            self._runtime.DLA_core = int(settings.dla_core)
        self._engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self._engine is None:
            raise UsageError(f"TensorRT could not deserialize {path.name}: rebuild it here with {COMPILE_HINT}")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.input_name = self._inputs[0]
        self._dtype = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in names}
        self._stream = _ck(self._cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, capacity in bytes)
        self._shape: tuple[int, ...] | None = None

    def _device_buffer(self, name: str, nbytes: int) -> int:
        ptr, cap = self._buffers.get(name, (0, 0))
        if cap < nbytes:
            if ptr:
                _ck(self._cudart.cudaFree(ptr))
            ptr = int(_ck(self._cudart.cudaMalloc(nbytes)))
            self._buffers[name] = (ptr, nbytes)
            self._context.set_tensor_address(name, ptr)
        return ptr

    def infer(self, batch: np.ndarray) -> np.ndarray:
        cu = self._cudart
        host_in = np.ascontiguousarray(batch, dtype=self._dtype[self.input_name])
        if host_in.shape != self._shape:
            if not self._context.set_input_shape(self.input_name, host_in.shape):
                raise UsageError(f"input shape {host_in.shape} is outside the engine's optimisation profile")
            self._shape = host_in.shape
        d_in = self._device_buffer(self.input_name, host_in.nbytes)
        kind = cu.cudaMemcpyKind
        _ck(cu.cudaMemcpyAsync(d_in, host_in.ctypes.data, host_in.nbytes, kind.cudaMemcpyHostToDevice, self._stream))
        out_name = self._outputs[0]
        outs = {n: np.empty(tuple(self._context.get_tensor_shape(n)), dtype=self._dtype[n]) for n in self._outputs}
        for name, host in outs.items():
            self._device_buffer(name, max(host.nbytes, 1))
        if not self._context.execute_async_v3(int(self._stream)):
            raise StageFailed("TensorRT execute_async_v3 failed")
        host_out = outs[out_name]
        d_out = self._buffers[out_name][0]
        _ck(cu.cudaMemcpyAsync(host_out.ctypes.data, d_out, host_out.nbytes, kind.cudaMemcpyDeviceToHost, self._stream))
        _ck(cu.cudaStreamSynchronize(self._stream))
        return host_out

    def describe(self) -> dict[str, Any]:
        plan = self.record.get("plan", {})
        return {"runtime": "tensorrt", "version": self._trt.__version__, "artifact": str(self.path),
                "device": "DLA" if self.settings.dla_core is not None else "GPU", "dla_core": self.settings.dla_core,
                "precision": plan.get("precision", self.settings.precision), "build_plan": plan,
                "environment": self.record.get("environment"), "layers": getattr(self._engine, "num_layers", None),
                "threads": None,
                "inference": "execute_async_v3 on one CUDA stream, synchronised per call; pageable host buffers"}

    def __del__(self) -> None:  # pragma: no cover - needs a GPU
        cu = getattr(self, "_cudart", None)
        if cu is None:
            return
        for ptr, _ in getattr(self, "_buffers", {}).values():
            cu.cudaFree(ptr)
        if getattr(self, "_stream", None) is not None:
            cu.cudaStreamDestroy(self._stream)


class TensorRTRuntime(Runtime):
    name = "tensorrt"
    extra = "gpu"
    library = "tensorrt"
    converts_to_fp16 = True

    @classmethod
    def needs_nvidia_gpu(cls, device: str) -> bool:
        return True

    @classmethod
    def quant_preset(cls, device: str) -> str:
        return "trt"

    @classmethod
    def usable_here(cls, device: str) -> bool:
        from edgekd.runtimes.host import has_module, nvidia_gpu_here

        return has_module("tensorrt") and nvidia_gpu_here()


    def devices(self) -> list[str]:
        if not self.available():
            return []
        if trt_fingerprint()["gpu_name"] is None:
            return []
        try:
            import tensorrt as trt

            n_dla = trt.Builder(trt.Logger(trt.Logger.ERROR)).num_DLA_cores
        except Exception:  # pragma: no cover - needs a GPU
            n_dla = 0
        return ["GPU", *(f"DLA{i}" for i in range(n_dla))]

    def compile(self, onnx_path: Path, out_dir: Path, settings: RuntimeSettings) -> CompiledArtifact:
        trt = _trt("to build TensorRT engines")
        onnx_path, out_dir = Path(onnx_path), Path(out_dir)
        if not onnx_path.is_file():
            raise UsageError(f"ONNX file not found: {onnx_path}")
        out_dir.mkdir(parents=True, exist_ok=True)
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        major = int(str(trt.__version__).split(".")[0])
        flag = trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED if major >= 11 else None
        network = builder.create_network(0 if flag is None else 1 << int(flag))  # explicit batch always (TRT 10+)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise UsageError(f"TensorRT could not parse {onnx_path.name}: {errors}")
        inputs = {network.get_input(i).name: tuple(network.get_input(i).shape) for i in range(network.num_inputs)}
        plan = plan_build(settings, onnx_has_qdq(onnx_path), inputs, major)

        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
        for flag in plan.flags:
            if not hasattr(trt.BuilderFlag, flag):
                raise UsageError(f"TensorRT {trt.__version__} has no builder flag {flag}: use TensorRT 10.x")
            config.set_flag(getattr(trt.BuilderFlag, flag))
        config.builder_optimization_level = plan.optimization_level
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        if plan.dla_core is not None:
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = plan.dla_core
        if plan.profiles:
            profile = builder.create_optimization_profile()
            for p in plan.profiles:
                profile.set_shape(p.name, p.min, p.opt, p.max)
            config.add_optimization_profile(profile)
        cache_path = Path(settings.extra.get("timing_cache") or out_dir / "timing.cache")
        cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
        if not config.set_timing_cache(cache, False):
            config.set_timing_cache(config.create_timing_cache(b""), False)  # stale cache from another GPU

        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise StageFailed(f"TensorRT failed to build an engine from {onnx_path.name} (see the log above)")
        engine = out_dir / f"{onnx_path.stem}.plan"
        engine.write_bytes(bytes(serialized))
        cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
        digest = sha256_file(engine)
        env = trt_fingerprint()
        record = {"schema": 1, "engine_sha256": digest, "environment": env, "plan": asdict(plan)}
        fp_file = fingerprint_path(engine)
        fp_file.write_text(json.dumps(record, indent=2), encoding="utf-8")
        facts = {"sha256": digest, "environment": env, "plan": asdict(plan), "precision": plan.precision}
        return CompiledArtifact(path=engine, kind="trt_engine", files=(engine, fp_file, cache_path), facts=facts)

    def load(self, artifact_path: Path, settings: RuntimeSettings, *, expected_sha256: str | None = None
             ) -> TensorRTSession:
        """Load an engine this machine can run and the manifest vouches for (sha256 checked before tensorrt)."""
        path = Path(artifact_path)
        expected = expected_sha256 or settings.extra.get("expected_sha256")
        verify_engine(path, expected)  # integrity first: never touch an unvouched executable
        _trt("to run TensorRT engines")
        record = verify_engine(path, expected, current=trt_fingerprint())  # pragma: no cover - needs a GPU
        return TensorRTSession(path, path.read_bytes(), record, settings)  # pragma: no cover - needs a GPU
