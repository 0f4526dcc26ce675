"""OpenVINO runtime: ONNX -> IR (.xml/.bin) and pinned, synchronous inference.

Every property that changes numbers or speed is set explicitly and read back from the compiled model:
PERFORMANCE_HINT, NUM_STREAMS, INFERENCE_NUM_THREADS (when settings.threads is set) and
INFERENCE_PRECISION_HINT. The precision hint is never left to the default: on CPUs with AMX / AVX512-BF16
OpenVINO would otherwise silently run fp32 models in bf16. INT8 is not a precision hint: it comes from the
FakeQuantize ops in the graph (QDQ ONNX -> FakeQuantize), so int8 runs use f32 as the hint for the
non-quantized parts, and `layer_precisions()` shows which layers actually ran in i8/u8.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import UsageError, require
from edgekd.runtimes.base import (
    CompiledArtifact, Runtime, RuntimeSettings, Session, checked_model_file, unreadable_model,
)  # fmt: skip

# settings.precision -> INFERENCE_PRECISION_HINT element type name, and the precisions heavy layers should run in
_HINT = {"fp32": "f32", "int8": "f32", "fp16": "f16", "bf16": "bf16"}
_EXPECT = {"fp32": {"f32"}, "int8": {"i8", "u8"}, "fp16": {"f16"}, "bf16": {"bf16"}}
# runtime-model layer types that do the arithmetic (the ones a precision request is about)
HEAVY_LAYER_TYPES = frozenset({"Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul"})


def _ov(why: str = "") -> Any:
    return require("openvino", "cpu", why)


def _check_device(core: Any, device: str) -> None:
    available = list(core.available_devices)
    if device.split(":")[0] in ("AUTO", "HETERO", "MULTI", "BATCH"):
        return  # virtual devices: OpenVINO checks their members itself
    if device in available or any(d.split(".")[0] == device for d in available):
        return
    raise UsageError(
        f"OpenVINO device '{device}' is not available on this machine; available: {', '.join(available) or 'none'}"
    )


def _ov_type(ov: Any, precision: str) -> Any:
    if precision not in _HINT:
        raise UsageError(f"unknown precision '{precision}' for OpenVINO: choose fp32, fp16, bf16 or int8")
    return {"f32": ov.Type.f32, "f16": ov.Type.f16, "bf16": ov.Type.bf16}[_HINT[precision]]


def _rt(rt: Any, key: str) -> str | None:
    if key not in rt:
        return None
    value = rt[key]
    try:
        return str(value.astype(str))
    except Exception:  # pragma: no cover - older bindings return plain strings
        return str(value)


_AUTO_NAME = re.compile(r"\b([A-Z][A-Za-z0-9]*)_\d+\b")


def save_ir(model: Any, xml: Path) -> None:
    """ov.save_model (fp32 weights) with reproducible names: OpenVINO names unnamed nodes (and constants it
    folds) `<Type>_<process-wide counter>`, so the same model converted after other work in a process gets
    other names and other XML bytes; numbering them by graph position makes the IR bit-identical across runs
    (a resumed run, a rerun stage) without changing inputs, outputs or tensor names."""
    ov = _ov("to write OpenVINO IR")
    for i, node in enumerate(model.get_ordered_ops()):
        name = node.get_friendly_name()
        stable = _AUTO_NAME.sub(lambda m: f"{m.group(1)}_{i}", name)
        if stable != name:
            node.set_friendly_name(stable)
    model.set_friendly_name(Path(xml).stem)
    ov.save_model(model, str(xml), compress_to_fp16=False)


def _count_fake_quantize(model: Any) -> int:
    return sum(1 for op in model.get_ops() if op.get_type_name() == "FakeQuantize")


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    name = getattr(value, "name", None)  # enums
    if isinstance(name, str) and name:
        return name
    if hasattr(value, "get_type_name") and hasattr(value, "is_real"):  # ov.Type -> 'f32'
        return value.get_type_name()
    return str(value)


class OpenVINOSession(Session):
    """One synchronous InferRequest per compiled input shape (static shapes run faster than dynamic ones)."""

    _PROPERTY_KEYS = (
        "PERFORMANCE_HINT",
        "NUM_STREAMS",
        "INFERENCE_NUM_THREADS",
        "INFERENCE_PRECISION_HINT",
        "EXECUTION_MODE_HINT",
        "ENABLE_CPU_PINNING",
        "ENABLE_HYPER_THREADING",
        "SCHEDULING_CORE_TYPE",
        "EXECUTION_DEVICES",
    )

    def __init__(self, core: Any, model: Any, path: Path, settings: RuntimeSettings) -> None:
        self._ov = _ov()
        self._core = core
        self._model = model
        self.path = path
        self.settings = settings
        self.input_name = model.inputs[0].get_any_name()
        self._config = self._properties()
        self._compiled: dict[tuple[int, ...], tuple[Any, Any]] = {}
        self._bound: dict[tuple[int, ...], tuple[np.ndarray, Any]] = {}  # shape key -> (array, ov.Tensor on it)
        self._native = deque(maxlen=200_000)  # InferRequest.latency of each call (ms), the runtime's own timing
        self._last: Any = None
        shape = self._static_shape(settings.batch)
        self._compile(shape)

    def _properties(self) -> dict[str, Any]:
        ov, s = self._ov, self.settings
        import openvino.properties as props
        import openvino.properties.hint as hints

        try:
            mode = getattr(hints.PerformanceMode, s.performance_hint.upper())
        except AttributeError:
            raise UsageError(
                f"unknown OpenVINO performance hint '{s.performance_hint}': choose LATENCY or THROUGHPUT"
            ) from None
        config: dict[str, Any] = {
            hints.performance_mode: mode,
            props.num_streams: int(s.streams),
            hints.inference_precision: _ov_type(ov, s.precision),
        }
        if s.threads is not None:
            config[props.inference_num_threads] = int(s.threads)
        for key, value in s.extra.get("openvino_properties", {}).items():
            config[key] = value
        return config

    def _static_shape(self, batch: int) -> tuple[int, ...] | None:
        """The input shape with its batch set, or None when other dims are dynamic (kept dynamic then)."""
        pshape = self._model.inputs[0].get_partial_shape()
        if pshape.rank.is_dynamic:
            return None
        dims = [d.get_length() if d.is_static else -1 for d in pshape]
        if dims:
            dims[0] = batch
        return None if any(d < 0 for d in dims) else tuple(dims)

    def _compile(self, shape: tuple[int, ...] | None) -> tuple[Any, Any]:
        key = shape or ()
        if key in self._compiled:
            return self._compiled[key]
        if shape is not None:
            self._model.reshape({self._model.inputs[0]: self._ov.PartialShape(list(shape))})
        compiled = self._core.compile_model(self._model, self.settings.device, self._config)
        entry = (compiled, compiled.create_infer_request())
        self._compiled[key] = entry
        self._last = compiled
        return entry

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """One synchronous inference; the first output copied into a new numpy array.

        The input array is bound to the request once (an ov.Tensor sharing its memory) and re-bound only when
        another array comes: binding a new tensor per call (`infer({0: x})`) cost 35-100 us per call on a
        0.25 ms model and slowed the plugin's own inference too (edgekd bench measured 1.15-1.20x
        benchmark_app's median). A caller that writes new values into the same array gets them inferred.
        What the Python caller still adds over the runtime's own timing is reported beside it (native_latency_ms,
        edgekd.runtimes.native)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        key = tuple(batch.shape)
        entry = self._compiled.get(key) or self._compiled.get(())
        if entry is None:
            entry = self._compile(key)
        request = entry[1]
        bound = self._bound.get(key)
        if bound is None or bound[0] is not batch:
            tensor = self._ov.Tensor(batch, shared_memory=True)
            request.set_input_tensor(tensor)
            self._bound = {key: (batch, tensor)}  # one array kept alive per session, not one per batch seen
        request.infer(share_outputs=True)  # the synchronous API, as benchmark_app -api sync (start_async + wait
        self._native.append(request.latency)  # runs on the stream's threads instead: another code path)
        return request.get_output_tensor(0).data.copy()

    def native_latency_ms(self, last: int) -> list[float]:
        """The runtime's own latency (InferRequest.latency, ms) of the last `last` calls."""
        return list(self._native)[-last:] if last > 0 else []

    @property
    def compiled_model(self) -> Any:
        return self._last

    def properties(self) -> dict[str, Any]:
        """The properties in force, read back from the compiled model."""
        compiled = self._last
        supported = set(compiled.get_property("SUPPORTED_PROPERTIES"))
        return {k: _plain(compiled.get_property(k)) for k in self._PROPERTY_KEYS if k in supported}

    def layer_precisions(self) -> dict[str, Any]:
        """Per-precision layer counts from the runtime model, and heavy layers that ran in another precision."""
        runtime_model = self._last.get_runtime_model()
        counts: Counter[str] = Counter()
        heavy: Counter[str] = Counter()
        by_type: dict[str, Counter[str]] = {}
        mismatched: list[dict[str, str | None]] = []
        expected = _EXPECT.get(self.settings.precision, set())
        for op in runtime_model.get_ordered_ops():
            rt = op.get_rt_info()
            layer_type = _rt(rt, "layerType") or op.get_type_name()
            precision = _rt(rt, "runtimePrecision") or "unknown"
            if layer_type in ("Const", "Input", "Output", "Parameter", "Result"):
                continue
            counts[precision] += 1
            by_type.setdefault(layer_type, Counter())[precision] += 1
            if layer_type in HEAVY_LAYER_TYPES:
                heavy[precision] += 1
                if precision not in expected:
                    mismatched.append(
                        {
                            "name": op.get_friendly_name(),
                            "type": layer_type,
                            "precision": precision,
                            "primitive": _rt(rt, "primitiveType"),
                        }
                    )
        return {
            "asked": self.settings.precision,
            "expected_heavy": sorted(expected),
            "counts": dict(counts),
            "heavy_counts": dict(heavy),
            "by_type": {k: dict(v) for k, v in sorted(by_type.items())},
            "mismatched": mismatched,
        }

    def describe(self) -> dict[str, Any]:
        ov = self._ov
        try:
            device_name = self._core.get_property(self.settings.device, "FULL_DEVICE_NAME")
        except Exception:
            device_name = None
        layers = self.layer_precisions()
        return {
            "runtime": "openvino",
            "version": ov.get_version(),
            "artifact": str(self.path),
            "device": self.settings.device,
            "device_name": device_name,
            "precision": self.settings.precision,
            "properties": self.properties(),
            "threads": self.properties().get("INFERENCE_NUM_THREADS"),
            "compiled_shapes": [list(k) if k else "dynamic" for k in self._compiled],
            "fake_quantize_ops": _count_fake_quantize(self._model),
            # the one key every reader uses (bench stage, report, `edgekd bench`); "mismatched" names the heavy
            # layers the plugin ran in another precision than asked, e.g. layers left in float by the fallback
            "layer_precisions": {k: layers[k] for k in ("asked", "counts", "heavy_counts", "mismatched")},
            "inference": "one synchronous InferRequest",
        }


class OpenVINORuntime(Runtime):
    name = "openvino"
    extra = "cpu"
    library = "openvino"
    converts_to_fp16 = True

    @classmethod
    def runs_on_host_cpu(cls, device: str) -> bool:
        return device == "CPU"

    @classmethod
    def usable_here(cls, device: str) -> bool:
        from edgekd.runtimes.host import has_module

        if not has_module("openvino"):
            return False
        return device == "CPU" or device in _ov().Core().available_devices


    def devices(self) -> list[str]:
        return list(_ov().Core().available_devices)

    def compile(self, onnx_path: Path, out_dir: Path, settings: RuntimeSettings) -> CompiledArtifact:
        """Convert ONNX to IR with fp32 weights kept (compress_to_fp16=False) and a dynamic batch dim."""
        ov = _ov("to convert ONNX to OpenVINO IR")
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise UsageError(f"ONNX file not found: {onnx_path}")
        model = ov.convert_model(str(onnx_path))
        shapes = {}
        for inp in model.inputs:
            pshape = inp.get_partial_shape()
            if pshape.rank.is_static and pshape.rank.get_length() > 0:
                dims = [d for d in pshape]
                dims[0] = ov.Dimension(-1)
                pshape = ov.PartialShape(dims)
            shapes[inp] = pshape
        model.reshape(shapes)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        xml = out_dir / f"{onnx_path.stem}.xml"
        save_ir(model, xml)
        fq = _count_fake_quantize(model)
        return CompiledArtifact(
            path=xml,
            kind="openvino_ir",
            files=(xml, xml.with_suffix(".bin")),
            facts={
                "openvino_version": ov.get_version(),
                "weights": "fp32 (compress_to_fp16=False)",
                "input_shapes": {i.get_any_name(): str(i.get_partial_shape()) for i in model.inputs},
                "fake_quantize_ops": fq,
                "precision": "int8" if fq else "fp32",
            },
        )

    def load(self, artifact_path: Path, settings: RuntimeSettings, *, expected_sha256: str | None = None
             ) -> OpenVINOSession:
        """Load an IR .xml (or an .onnx directly) on settings.device with every property pinned."""
        ov = _ov("to run OpenVINO models")
        path = checked_model_file(artifact_path, (".xml", ".onnx"), "OpenVINO loads .xml (IR) or .onnx files",
                                  expected_sha256)
        _ov_type(ov, settings.precision)
        core = ov.Core()
        _check_device(core, settings.device)
        try:
            if path.suffix == ".xml":  # not XML: say so before OpenVINO tries every frontend (and logs each)
                import xml.etree.ElementTree as ET

                ET.parse(path)
            model = core.read_model(str(path))
        except (RuntimeError, SyntaxError) as exc:  # ET.ParseError is a SyntaxError  # not IR/ONNX, truncated, or an .xml whose .bin does not match
            raise unreadable_model(path, exc, "OpenVINO IR" if path.suffix == ".xml" else "ONNX") from None
        if settings.precision == "int8" and _count_fake_quantize(model) == 0:
            raise UsageError(
                f"precision int8 asked but {path.name} has no FakeQuantize/QDQ ops: OpenVINO would run it in "
                "floating point; pass the quantized (QDQ) model or ask for fp32"
            )
        return OpenVINOSession(core, model, path, settings)
