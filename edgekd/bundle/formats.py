"""The formats a bundle can hold, and how each one is written from a run.

Always available (the `cpu` extra): onnx (teacher FP32, student FP32, student INT8 QDQ), ort (ONNX Runtime's
mobile format, FP32 and INT8), openvino (the INT8 IR, and the FP32 IR when the run compiled one), tensorrt
(the plan and its fingerprint, only when the run built one on a GPU). Optional, when their package is
installed (the `mobile` extra; then they are in the default bundle too): executorch (.pte lowered to XNNPACK),
tflite (LiteRT, via litert-torch), coreml (.mlpackage, ML program), each FP32 and INT8 (edgekd.bundle.mobile).
The .pte and .tflite files are run here and verified; a .mlpackage is checked as a spec (Core ML needs macOS).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgekd.bundle import mobile
from edgekd.bundle.run_info import RunView
from edgekd.errors import UsageError
from edgekd.manifest import sha256_file

DEFAULT_FORMATS = ("onnx", "ort", "openvino", "tensorrt")
# format -> (python modules it needs, all of them; pip package to install; what it is). All three come with the
# `mobile` extra and are in the default bundle when it is installed.
OPTIONAL: dict[str, tuple[tuple[str, ...], str, str]] = {
    "executorch": (("executorch",), "executorch", "ExecuTorch .pte with the XNNPACK backend"),
    "tflite": (("litert_torch", "ai_edge_litert"), "litert-torch and ai-edge-litert", "LiteRT .tflite"),
    "coreml": (("coremltools",), "coremltools", "Core ML .mlpackage"),
}
ALL_FORMATS = (*DEFAULT_FORMATS, *OPTIONAL)


@dataclass
class Planned:
    """One artifact to put in the bundle: where its files go, and what it is."""

    name: str
    role: str
    format: str
    precision: str
    runtimes: list[str]
    files: list[Path]  # absolute paths inside the bundle, main file first (a .mlpackage: the folder)
    facts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # the converter could not build it: listed as not built, the rest of the bundle is kept


def parse_formats(values: list[str] | None, run: RunView | None = None) -> list[str]:
    """'onnx,ort' or repeated --formats -> ordered unique names; unknown names and missing packages fail."""
    explicit = bool(values)
    names: list[str] = []
    for v in values or default_formats():
        for name in (p.strip().lower() for p in v.split(",")):
            if not name:
                continue
            if name not in ALL_FORMATS:
                raise UsageError(f"unknown bundle format '{name}': choose from {', '.join(ALL_FORMATS)}")
            if name not in names:
                names.append(name)
    if not names:
        raise UsageError(f"--formats is empty: choose from {', '.join(ALL_FORMATS)}")
    for name in names:
        if name in OPTIONAL:
            modules, package, what = OPTIONAL[name]
            if not _installed(modules):
                raise UsageError(f"format '{name}' ({what}) needs {package} from the 'mobile' extra, which is not "
                                 f"installed: pip install 'edgekd[mobile]'")
    if run is not None and "tensorrt" in names and not has_trt_plan(run):
        if explicit:
            raise UsageError("format 'tensorrt': this run built no TensorRT plan (plans are built only on a "
                             "machine with an NVIDIA GPU and TensorRT; the QDQ ONNX in 'onnx' is what a device "
                             "builds its plan from)")
        names.remove("tensorrt")
    return names


def _installed(modules: tuple[str, ...]) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def default_formats() -> list[str]:
    """onnx, ort, openvino, tensorrt, and the mobile formats whose packages are installed."""
    return [*DEFAULT_FORMATS, *(name for name, (modules, _, _) in OPTIONAL.items() if _installed(modules))]


def has_trt_plan(run: RunView) -> bool:
    if not run.has("compile"):
        return False
    return any(a.kind.value == "trt_engine" for a in run.manifest("compile").artifacts)


def _copy(src: Path, dst: Path) -> Path:
    if not src.is_file():
        raise UsageError(f"the run's file {src} is missing: the run folder is incomplete")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
    return dst


def write_onnx(run: RunView, models: Path) -> list[Planned]:
    out = []
    for name, role, precision in (("teacher_fp32", "teacher_fp32", "fp32"), ("student_fp32", "student_fp32", "fp32"),
                                  ("student_int8_qdq", "student_int8", "int8")):
        art = run.manifest("export").artifact(name)
        dst = _copy(run.path("export", name), models / f"{name}.onnx")
        facts = {k: art.facts[k] for k in ("opset", "input_name", "output_name", "parity") if k in art.facts}
        facts["from_run"] = f"export/{art.path} (sha256 {art.sha256[:12]})"
        out.append(Planned(name, role, "onnx", precision, ["onnxruntime", "openvino", "tensorrt"], [dst], facts))
    return out


def write_ort(run: RunView, models: Path) -> list[Planned]:
    from edgekd.runtimes.onnxruntime import to_ort_format

    out = []
    for src_name, name, role, precision in (("student_fp32", "student_fp32_ort", "student_fp32", "fp32"),
                                            ("student_int8_qdq", "student_int8_ort", "student_int8", "int8")):
        dst = models / f"{name.removesuffix('_ort')}.ort"
        src = run.path("export", src_name)
        _convert("ort", lambda: to_ort_format(src, dst, level="extended"))
        out.append(Planned(name, role, "ort", precision, ["onnxruntime"], [dst],
                           {"from": f"{src_name}.onnx", "graph_optimization": "extended (portable across CPUs)",
                            "note": "load with onnxruntime or onnxruntime-mobile (session.load_model_format=ORT)"}))
    return out


def write_openvino(run: RunView, models: Path) -> list[Planned]:
    export = run.manifest("export")
    out = []
    if not export.has("student_int8_openvino"):
        raise UsageError("format 'openvino': this run has no OpenVINO IR (openvino was not installed when it ran): "
                         "install it with pip install 'edgekd[cpu]' and rerun compress")
    xml = _copy(run.path("export", "student_int8_openvino"), models / "openvino" / "student_int8.xml")
    bin_ = _copy(run.path("export", "student_int8_openvino_bin"), models / "openvino" / "student_int8.bin")
    art = export.artifact("student_int8_openvino")
    out.append(Planned("student_int8_openvino", "student_int8", "openvino_ir", "int8", ["openvino"], [xml, bin_],
                       {"fake_quantize": art.facts.get("fake_quantize"), "parity": art.facts.get("parity"),
                        "from": "NNCF-quantized PyTorch model converted with openvino.convert_model"}))
    if run.has("compile"):
        comp = run.manifest("compile")
        if comp.has("student_fp32") and comp.artifact("student_fp32").kind.value == "openvino_ir":
            src = run.path("compile", "student_fp32")
            x = _copy(src, models / "openvino" / "student_fp32.xml")
            b = _copy(src.with_suffix(".bin"), models / "openvino" / "student_fp32.bin")
            out.append(Planned("student_fp32_openvino", "student_fp32", "openvino_ir", "fp32", ["openvino"], [x, b],
                               {"from": "compile stage (ONNX FP32 -> IR)"}))
    return out


def write_tensorrt(run: RunView, models: Path) -> list[Planned]:
    from edgekd.runtimes.tensorrt import fingerprint_path

    out = []
    comp = run.manifest("compile")
    for art in comp.artifacts:
        if art.kind.value != "trt_engine":
            continue
        src = run.dirs["compile"] / art.path
        role = art.facts.get("role", art.name)
        plan = _copy(src, models / "tensorrt" / f"{role}.plan")
        files = [plan]
        fp = fingerprint_path(src)
        if fp.is_file():
            files.append(_copy(fp, models / "tensorrt" / f"{role}.plan.fingerprint.json"))
        record = json.loads(fp.read_text()) if fp.is_file() else {}
        out.append(Planned(f"{role}_tensorrt", role, "trt_engine", str(art.facts.get("precision", "int8")),
                           ["tensorrt"], files, {"fingerprint": record or None,
                                                 "fingerprint_matches_plan": record.get("engine_sha256") ==
                                                 sha256_file(plan) if record else None,
                                                 "note": "runs only on the GPU model and TensorRT version in its "
                                                         "fingerprint"}))
    return out


# ------------------------------------------------------------------ optional formats (need the PyTorch model)
_OP_PATTERNS = (r"(aten[.:]{1,2}[A-Za-z_0-9]+(?:\.[A-Za-z_0-9]+)?)", r"[Uu]nsupported (?:op|operator|operation)[^:]*: *'?([\w.:]+)",
                r"op(?:erator)? '?([\w.:]+)'? (?:is )?not supported", r"[Cc]onverter for '?([\w.:]+)'? not",
                r"implementation for (\w+\(\d+\))",  # ONNX Runtime: "Could not find an implementation for X(17)"
                r"Unsupported fx node (\w+)")  # coremltools


def unsupported_operator(exc: BaseException) -> str | None:
    """The operator a converter's error names, if any (aten.xxx, 'unsupported op: X', ...)."""
    text = str(exc)
    for pattern in _OP_PATTERNS:
        match = re.search(pattern, text)
        if match:
            return match.group(1)
    return None


def _convert(fmt: str, fn: Callable[[], None]) -> None:
    """Run a converter; its failure becomes one line naming the operator the format cannot hold."""
    try:
        fn()
    except UsageError:
        raise
    except Exception as exc:  # converters raise many types; the user needs the operator and the format
        op = unsupported_operator(exc)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        what = f"operator {op}" if op else first
        raise UsageError(f"format '{fmt}' cannot hold the model: {what} is not supported by the converter") from None


WRITERS: dict[str, Callable[[RunView, Path], list[Planned]]] = {
    "onnx": write_onnx, "ort": write_ort, "openvino": write_openvino, "tensorrt": write_tensorrt,
    "executorch": mobile.write_executorch, "coreml": mobile.write_coreml, "tflite": mobile.write_tflite,
}
