"""Manifests: what a finished stage wrote, why, and from what.

Each stage lives in `runs/<run>/<stage>-<id>/` with a `manifest.json`. The id is
`sha256(stage name, config, parent ids, input fingerprint, code)[:12]`, where code is a hash of the stage
module's source and of every edgekd module it imports (edgekd.codehash): the same inputs and code give the
same id, so a rerun finds the manifest and skips the stage, and changing one option, or the code behind a
stage, reruns that stage and those after it.
A stage works in `runs/<run>/.work-<stage>-<id>/` (its per-epoch checkpoints live there, so an interrupted
stage resumes) and is renamed into place only when it has finished: a manifest never lies.
"""

from __future__ import annotations

import json
import platform
import sys
from datetime import datetime, timezone
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgekd.errors import UsageError
from edgekd.fsio import file_problems, publish, sha256_file, short_hash, write_atomic  # sha256_file: also imported from here

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


class ArtifactKind(str, Enum):
    checkpoint = "checkpoint"
    quantized_checkpoint = "quantized_checkpoint"
    onnx = "onnx"
    openvino_ir = "openvino_ir"
    trt_engine = "trt_engine"
    ort_model = "ort_model"
    pte = "pte"  # ExecuTorch program (edgekd.export.mobile)
    tflite = "tflite"  # LiteRT model
    calibration = "calibration"
    report = "report"
    plot = "plot"
    other = "other"


class Artifact(BaseModel):
    """One file a stage wrote. `path` is relative to the stage folder."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: ArtifactKind
    path: str
    sha256: str
    size_bytes: int
    facts: dict[str, Any] = Field(default_factory=dict)


class Preprocessing(BaseModel):
    """What a raw input goes through before the model: travels with the weights.

    For image files (`source == "image_file"`) the steps are, in order (edgekd.preprocess.load_image is the
    reference implementation, numpy + Pillow only; the bundle carries a copy as preprocess.py):
    1. decode; if `exif_transpose`, apply the EXIF orientation tag (PIL.ImageOps.exif_transpose);
    2. colour: 16-bit / 32-bit integer grey is scaled to 8 bits (value * 255 / 65535, rounded); an image with
       alpha (RGBA, LA, P with transparency) is composited on `alpha_background`; then converted to RGB
       (or L for 1 channel) with Pillow's convert (L = ITU-R 601-2 luma, CMYK -> RGB naive inverse);
    3. resize (aspect kept) so the shorter side is `resize_shorter` and the image covers `input_size`, with
       `interpolation` (Pillow's resampling filter, which antialiases when downscaling);
    4. centre crop to `input_size` (height, width): left = (w - W) // 2, top = (h - H) // 2;
    5. uint8 (C, H, W) in `channel_order`; x = (raw / value_scale - mean) / std per channel, float32, `layout`.
    `source == "array"` (the embedded digits) has no file steps: raw arrays go straight to step 5.
    """

    model_config = ConfigDict(extra="forbid")

    input_size: tuple[int, int]  # (height, width) of the model input: the centre crop
    channels: int
    mean: list[float]
    std: list[float]
    value_scale: float = 255.0  # raw value that maps to 1.0 (255 for 8-bit images, 16 for sklearn digits)
    resize_shorter: int | None = None  # shorter side resized to this before the centre crop (None: no resize)
    interpolation: Literal["nearest", "bilinear", "bicubic", "lanczos"] = "bilinear"
    antialias: bool = True  # Pillow's filters widen their support when downscaling
    exif_transpose: bool = True
    alpha_background: tuple[int, int, int] = (255, 255, 255)
    source: Literal["image_file", "array"] = "image_file"
    size_source: str = ""  # why this input size: --input-size, the target, the teacher's weights, the data
    channel_order: str = "RGB"
    layout: str = "NCHW"
    class_names: list[str]

    @model_validator(mode="before")
    @classmethod
    def _legacy_resize(cls, data: Any) -> Any:
        """Records written before resize_shorter existed called it `resize`."""
        if isinstance(data, dict) and "resize" in data:
            data = dict(data)
            legacy = data.pop("resize")
            data.setdefault("resize_shorter", legacy)
        return data


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    stage: str
    id: str
    config: dict[str, Any]
    parents: dict[str, str] = Field(default_factory=dict)  # role -> parent stage id
    # role -> {artifact name: sha256} of the parent's files this stage was built from: a parent rerun that
    # produced different files makes this stage rerun too (empty in manifests written before this field)
    parent_artifacts: dict[str, dict[str, str]] = Field(default_factory=dict)
    input_fingerprint: str | None = None
    # edgekd module -> short sha256 of its source, for every module the stage's code reaches (edgekd.codehash);
    # empty in manifests written before stage ids covered the code
    code: dict[str, str] = Field(default_factory=dict)
    artifacts: list[Artifact] = Field(default_factory=list)
    preprocessing: Preprocessing | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    versions: dict[str, str] = Field(default_factory=dict)
    made_on: dict[str, Any] = Field(default_factory=dict)  # host (CPU, GPU) and runtimes (edgekd.stage_env)
    started_at: str = ""
    finished_at: str = ""
    wall_s: float = 0.0

    def artifact(self, name: str) -> Artifact:
        for art in self.artifacts:
            if art.name == name:
                return art
        raise KeyError(f"stage {self.stage} has no artifact named {name!r}")

    def has(self, name: str) -> bool:
        return any(a.name == name for a in self.artifacts)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def stage_id(stage: str, config: dict[str, Any], parents: dict[str, str], fingerprint: Any, code: str = "") -> str:
    """`code`: edgekd.codehash.code_id of the stage module (what makes a fix to the stage's code rerun it). Without
    it (the pipeline's seed key) the payload is the one ids had before code entered them, so seeds stay put."""
    fields = {"stage": stage, "config": config, "parents": parents, "inputs": fingerprint}
    payload = canonical_json({**fields, "code": code} if code else fields)
    return short_hash(payload)


def make_artifact(stage_dir: Path, name: str, kind: ArtifactKind, path: Path, **facts: Any) -> Artifact:
    """`path` may be absolute, relative to the working directory, or relative to `stage_dir`."""
    path, stage_dir = Path(path), Path(stage_dir)
    base = stage_dir.resolve()
    full = path.resolve() if (path.is_absolute() or path.exists()) else (base / path).resolve()
    rel = full.relative_to(base)
    return Artifact(
        name=name, kind=kind, path=rel.as_posix(), sha256=sha256_file(full),
        size_bytes=full.stat().st_size, facts=facts,
    )


def library_versions(names: tuple[str, ...] = (
    "edgekd", "torch", "torchvision", "nncf", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino",
    "tensorrt", "numpy", "torchao", "executorch", "litert-torch", "ai-edge-litert", "coremltools",
)) -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: str) -> None:
    """Write a whole text file durably (temporary name, fsync, rename, fsync of the folder)."""
    write_atomic(path, data)


def save_manifest(manifest: Manifest, stage_dir: Path) -> None:
    write_json_atomic(stage_dir / MANIFEST_NAME, manifest.model_dump_json(indent=2))


def load_manifest(stage_dir: Path) -> Manifest:
    from edgekd.configio import read_model_json

    path = stage_dir / MANIFEST_NAME
    return read_model_json(path, Manifest, f"{stage_dir} has no {MANIFEST_NAME}: not a finished edgekd stage folder",
                           f"{path} is not a valid edgekd manifest ({{why}})")


def verify_artifacts(manifest: Manifest, stage_dir: Path) -> list[str]:
    """Return one line per artifact whose file is missing or whose sha256 no longer matches."""
    why = {"missing": "missing", "changed": "sha256 does not match the manifest (file changed after the run)"}
    return [f"{rel}: {why[kind]}" for rel, kind in
            file_problems(stage_dir, [(art.path, art.sha256) for art in manifest.artifacts])]


def artifact_hashes(manifest: Manifest) -> dict[str, str]:
    return {a.name: a.sha256 for a in manifest.artifacts}


def finalize_stage_dir(work_dir: Path, final_dir: Path) -> None:
    """Move a finished work folder into place durably (every file flushed first); an older copy is replaced."""
    publish(work_dir, final_dir)


def python_executable() -> str:
    return sys.executable
