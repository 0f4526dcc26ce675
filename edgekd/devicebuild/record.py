"""compiled.json: what `edgekd compile` built for one target on one device, and for which environment.

`edgekd compile PATH --target T` writes `PATH/compiled/T/` (PATH: a bundle folder or run directory; for a lone
ONNX file, the folder holding it) with the runtime's artifacts and `compiled.json`: the environment fingerprint
(runtime versions and the device: TensorRT/CUDA/driver/GPU/compute capability, OpenVINO version and device name,
ONNX Runtime version and CPU), the sha256 of every file built and of the ONNX/IR it was built from. A record is
used (by `compile` to skip a rebuild, by `bench` and `gate`) only when its fingerprint matches this machine and
every sha256 matches; a TensorRT engine is never deserialised otherwise. No runtime is imported here.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgekd.errors import UsageError
from edgekd.fsio import file_problems, sha256_file

RECORD_NAME = "compiled.json"
# keys of the environment that must be equal for an artifact to be used on this machine, per runtime
MATCH_KEYS = {
    "tensorrt": ("gpu_name", "compute_capability", "tensorrt_version"),
    "openvino": ("openvino_version", "device", "device_name"),
    "onnxruntime": ("onnxruntime_version", "cpu_model", "cpu_flags_sha256"),
}


class BuiltFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str  # relative to the record's folder
    sha256: str
    size_bytes: int


class BuiltArtifact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str
    precision: str
    format: str  # trt_engine | openvino_ir | onnx (ORT-optimised)
    files: list[BuiltFile]  # main file first
    source: str  # the file it was built from (as the user's PATH names it)
    source_sha256: str
    facts: dict[str, Any] = Field(default_factory=dict)


class CompiledRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    target: str
    runtime: str
    device: str
    environment: dict[str, Any]
    host: str
    created_at: str
    artifacts: list[BuiltArtifact]
    notes: list[str] = Field(default_factory=list)


def compiled_root(path: Path) -> Path:
    """Where `edgekd compile` writes for PATH (a bundle / run folder, or the folder of a model file)."""
    path = Path(path)
    return (path if path.is_dir() else path.parent) / "compiled"


def compile_command(path: Path, target: str) -> str:
    return f"edgekd compile {path} --target {target}"


def environment_mismatch(runtime: str, stored: dict[str, Any], current: dict[str, Any]) -> str | None:
    """None when an artifact built in `stored` may run in `current`, else which facts differ."""
    if runtime == "tensorrt":
        from edgekd.runtimes.tensorrt import compare_fingerprints

        return compare_fingerprints(stored, current)
    differs = [k for k in MATCH_KEYS.get(runtime, ()) if stored.get(k) != current.get(k)]
    if not differs:
        return None
    return "built for " + ", ".join(f"{k} {stored.get(k)!r}" for k in differs) + "; this machine has " + \
        ", ".join(f"{k} {current.get(k)!r}" for k in differs)


def read_record(folder: Path) -> CompiledRecord | None:
    file = folder / RECORD_NAME
    if not file.is_file():
        return None
    try:
        return CompiledRecord.model_validate_json(file.read_text(encoding="utf-8"))
    except (ValidationError, ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{file} is not an edgekd compile record ({str(exc).splitlines()[0]}): delete {folder} "
                         "and run edgekd compile again") from None


def damaged_files(record: CompiledRecord, folder: Path) -> list[str]:
    why = {"missing": "is missing", "changed": f"changed after it was built (sha256 differs from {RECORD_NAME})"}
    return [f"{rel} {why[kind]}" for rel, kind in
            file_problems(folder, [(f.path, f.sha256) for art in record.artifacts for f in art.files])]


def write_record(record: CompiledRecord, folder: Path) -> None:
    from edgekd.manifest import write_json_atomic

    write_json_atomic(folder / RECORD_NAME, json.dumps(record.model_dump(mode="json"), indent=2) + "\n")


# ------------------------------------------------------------------------------------ bench / gate side
def use_compiled(res: Any, target: Any, plan: Any) -> tuple[Any, list[str]]:
    """`res` (edgekd.artifacts.Resolved) with what `edgekd compile` built for `target` first among its
    candidates, when measuring on the target. Returns (resolved, notes).

    - a record whose environment differs from this machine, or whose files changed: UsageError naming the
      command to run (never a stale engine);
    - no record and a TensorRT target measured on the device: UsageError naming the command (the bundle holds
      no engine for this GPU); for OpenVINO / ONNX Runtime a note names it (their bundle files run as they are).
    """
    from edgekd.artifacts import Candidate

    if not plan.on_target or res.kind == "file":
        return res, []
    folder = compiled_root(res.path) / target.name
    cmd = compile_command(res.path, target.name)
    record = read_record(folder)
    has_engine = any(c.format == "trt_engine" for c in res.candidates)
    if record is None:
        if target.runtime.name == "tensorrt" and not has_engine:
            raise UsageError(f"{res.path.name} has no TensorRT engine built on this device: run `{cmd}` here first "
                             "(engines are built on the device they run on)")
        return res, [f"measured {res.path.name}'s own files: `{cmd}` builds them for this device first"]
    from edgekd.devicebuild.environment import current_environment

    why = environment_mismatch(record.runtime, record.environment,
                               current_environment(record.runtime, target.runtime.device))
    if why:
        raise UsageError(f"{folder / RECORD_NAME}: {why}: rebuild for this machine with `{cmd}`")
    if bad := damaged_files(record, folder):
        raise UsageError(f"{folder}: {bad[0]}: rebuild with `{cmd}`")
    runtimes = {"trt_engine": ("tensorrt",), "openvino_ir": ("openvino",), "onnx": ("onnxruntime",)}
    cands = []
    for art in record.artifacts:
        files = [folder / f.path for f in art.files]
        cands.append(Candidate(role=art.role, file=files[0], format=art.format, precision=art.precision,
                               runtimes=runtimes[art.format], label=f"compiled/{target.name}/{art.files[0].path}",
                               origin="compile", compiled_for=record.runtime,
                               expected={p: f.sha256 for p, f in zip(files, art.files)},
                               labels={p: f"compiled/{target.name}/{f.path}" for p, f in zip(files, art.files)},
                               onnx=res.onnx_for(art.role)))
    others = [c for c in res.candidates if c.format != "trt_engine"]  # a bundle's own engine is not this GPU's
    note = f"measured what `edgekd compile` built on this machine ({folder}, {record.created_at})"
    return replace(res, candidates=cands + others), [note]
