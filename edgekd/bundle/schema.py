"""bundle.json: the contract between edgekd and the team that ships the model (no torch needed to read it).

Layout of a bundle folder (also packed as `<name>.tar.gz` beside it):

    bundle.json          this schema
    model_card.md        the same facts for people
    models/              one file (or IR pair) per artifact, e.g. student_int8_qdq.onnx, student_int8.ort,
                         openvino/student_int8.xml + .bin, tensorrt/student_int8.plan + .fingerprint.json
    eval_set.npz         held-out images (uint8 raw, labels) for `edgekd bench BUNDLE` on the device
    reference.npz        a few raw sample inputs and, per artifact, the expected outputs
    preprocess.py        the preprocessing of `preprocessing` as standalone numpy + Pillow code (image files)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgekd.manifest import Preprocessing

BUNDLE_FORMAT = "edgekd-bundle/1"
BUNDLE_JSON = "bundle.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BundleFile(_Strict):
    path: str  # relative to the bundle folder
    sha256: str
    size_bytes: int


class LatencyClaim(_Strict):
    target: str
    percentile: str
    value_ms: float
    basis: Literal["measured", "estimated"]
    runtime: str
    note: str = ""


class BundleArtifact(_Strict):
    name: str  # e.g. student_int8_qdq
    role: Literal["teacher_fp32", "student_fp32", "student_int8"]
    format: Literal["onnx", "ort", "openvino_ir", "trt_engine", "pte", "mlpackage", "tflite"]
    precision: Literal["fp32", "fp16", "int8"]
    runtimes: list[str]  # runtimes that can load it (onnxruntime, openvino, tensorrt, ...)
    files: list[BundleFile]  # the main file first (an IR: xml then bin)
    top1: float | None = None  # on the held-out split, measured on `top1_runtime`
    top1_runtime: str | None = None
    latency: list[LatencyClaim] = Field(default_factory=list)
    verified: dict[str, Any] = Field(default_factory=dict)  # reference check: max_abs, top1 agreement, integer ops
    facts: dict[str, Any] = Field(default_factory=dict)


class BundleInput(_Strict):
    name: str = "input"
    shape: list[int | str]  # ["batch", C, H, W]
    dtype: str = "float32"
    layout: str = "NCHW"


class Bundle(_Strict):
    format: str = BUNDLE_FORMAT
    name: str
    task: str = "image-classification"
    created_at: str
    classes: list[str]
    input: BundleInput
    output_name: str = "logits"
    preprocessing: Preprocessing
    pipeline: dict[str, Any]  # teacher, transfer mode, student, losses, quantization, run stage ids
    artifacts: list[BundleArtifact]
    eval_set: BundleFile | None = None
    reference: BundleFile | None = None
    extra_files: list[BundleFile] = Field(default_factory=list)  # model_card.md and others
    versions: dict[str, str] = Field(default_factory=dict)
    # optional fields added after the first version: a bundle.json without them still validates
    archive: str | None = None  # the .tar.gz written beside the folder (not hashed here: it holds this file)
    verification: dict[str, Any] = Field(default_factory=dict)  # summary: passed, failures, not run, where
    content_sha256: str | None = None  # sha256 of this document's canonical JSON with this field null
