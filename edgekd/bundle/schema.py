"""bundle.json: the contract between edgekd and the team that ships the model (no torch needed to read it).

Layout of a bundle folder (also packed as `<name>.tar.gz` beside it):

    bundle.json          this schema
    model_card.md        the same facts for people
    models/              one file (or IR pair) per artifact, e.g. student_int8_qdq.onnx, student_int8.ort,
                         openvino/student_int8.xml + .bin, tensorrt/student_int8.plan + .fingerprint.json
    eval_set.npz         a stratified sample of the test split (uint8 raw, labels, at most --eval-set-size images;
                         `eval_set_sample` says how many of how many) for `edgekd bench BUNDLE` on the device
    reference.npz        a few raw sample inputs and, per artifact, the expected outputs
    preprocess.py        the preprocessing of `preprocessing` as standalone numpy + Pillow code (image files)

`preprocessing`, `input` and the two .npz files are the student's (the deployed model's). A student may take
smaller images than its teacher (edgekd.search.resolution): then `teacher_preprocessing` is the teacher's, and
the teacher_fp32 artifacts take that size (they have no expected outputs in reference.npz).
"""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgekd.manifest import Preprocessing

BUNDLE_FORMAT = "edgekd-bundle/1"
BUNDLE_JSON = "bundle.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def check_relative(path: str) -> str:
    """A path inside the bundle: relative, forward slashes, no `..`, no drive. Bundles are data, never
    directions: an absolute or escaping path in a (possibly hostile) bundle.json is refused on load."""
    if not path or "\\" in path or "\0" in path:
        raise ValueError(f"path {path!r} must be a non-empty relative path with forward slashes")
    if PurePosixPath(path).is_absolute() or PureWindowsPath(path).drive or PureWindowsPath(path).is_absolute():
        raise ValueError(f"path {path!r} is absolute: every file of a bundle must be inside it")
    if ".." in PurePosixPath(path).parts:
        raise ValueError(f"path {path!r} leaves the bundle ('..'): every file of a bundle must be inside it")
    return path


class BundleFile(_Strict):
    path: str  # relative to the bundle folder, inside it (checked on load)
    sha256: str
    size_bytes: int

    @field_validator("path")
    @classmethod
    def _inside(cls, v: str) -> str:
        return check_relative(v)


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
    top1: float | None = None  # on eval_set.npz (a sample of the test split), measured on `top1_runtime`
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

    @field_validator("archive")
    @classmethod
    def _archive_is_a_name(cls, v: str | None) -> str | None:
        if v is not None and (check_relative(v) != v or "/" in v):
            raise ValueError(f"archive {v!r} must be a file name beside the bundle folder")
        return v
    verification: dict[str, Any] = Field(default_factory=dict)  # summary: passed, failures, not run, where
    # which test images eval_set.npz holds: images, of, split, cap, seed, method, per_class (edgekd.preprocess.eval_sample)
    eval_set_sample: dict[str, Any] | None = None
    # the teacher's preprocessing when it takes another input size than the student (`preprocessing`, the
    # input, eval_set.npz and reference.npz are the student's): teacher_fp32 artifacts take this one
    teacher_preprocessing: Preprocessing | None = None
    content_sha256: str | None = None  # sha256 of this document's canonical JSON with this field null
