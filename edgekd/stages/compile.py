"""Stage 6, compile: the target runtime's own artifacts from the exported ONNX files.

- OpenVINO targets: IR for the FP32 models, and the INT8 IR converted from the quantized model.
- ONNX Runtime targets: the ONNX files with ORT's offline graph optimisations for this host applied.
- TensorRT targets: engines (INT8 from the QDQ graph, FP16 fallback), each with its environment fingerprint,
  when this machine has an NVIDIA GPU and TensorRT. Otherwise the device artifact is the QDQ ONNX (the
  device builds its engine from it) and the same files are prepared for ONNX Runtime on this host, to be
  measured there and labelled as a host substitute.
"""

from __future__ import annotations

import shutil

from pydantic import BaseModel, ConfigDict

from edgekd.benchmark import settings_for
from edgekd.manifest import ArtifactKind, Manifest, make_artifact
from edgekd.model_roles import ROLE_PRECISION, export_name
from edgekd.runtimes import get_runtime
from edgekd.runtimes.host import host_can_run
from edgekd.targets import TargetProfile

NAME = "compile"
READS_DATA = False
DISTRIBUTED = False


def environment(cfg: "Config") -> dict:
    """Part of the stage id: the runtime versions and this host's identity (edgekd.stage_env)."""
    from edgekd.devicebuild.environment import versions_for_stage

    return versions_for_stage(str(cfg.target["runtime"]["name"]))

KIND = {"openvino": ArtifactKind.openvino_ir, "onnxruntime": ArtifactKind.onnx, "tensorrt": ArtifactKind.trt_engine}


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: dict


def run(cfg: Config, parents: dict[str, Manifest], ctx) -> Manifest:
    target = TargetProfile.model_validate(cfg.target)
    export, export_dir = parents["export"], ctx.parent_dirs["export"]
    here = target.host_measurable  # the runtime is here and this machine is the device (identity)
    runtime = target.runtime.name
    notes: list[str] = []
    if not here:
        host = "onnxruntime"
        notes.append(f"{target.runtime.name} on {target.device.name} ({target.runtime.device}) is not available on "
                     f"this machine: the device artifacts are written, and the same ONNX files are measured with "
                     f"ONNX Runtime on this host (a substitute; device latency is estimated).")
        if runtime == "openvino" and host_can_run("openvino", "CPU", target.device.arch):
            host = "openvino"
    else:
        host = runtime
    artifacts = []
    for role, precision in ROLE_PRECISION.items():
        src = export.artifact(export_name(role))
        onnx_path = export_dir / src.path
        facts = dict(role=role, precision=precision, runtime=host, source=src.name,
                     measured_on="target" if here else "host substitute",
                     device=target.runtime.device if here else "CPU")
        out_dir = ctx.work_dir / role
        out_dir.mkdir()
        if host == "openvino" and role == "student_int8" and export.has("student_int8_openvino"):
            ir = export.artifact("student_int8_openvino")
            path = out_dir / "model.xml"
            shutil.copy2(export_dir / ir.path, path)
            shutil.copy2(export_dir / ir.facts["companion"], path.with_suffix(".bin"))
            facts["from"] = "OpenVINO IR converted from the NNCF-quantized PyTorch model (FakeQuantize -> INT8)"
        else:
            settings = settings_for(target, precision, device=None if here else "CPU")
            compiled = get_runtime(host).compile(onnx_path, out_dir, settings)
            path = compiled.path
            facts.update({k: v for k, v in compiled.facts.items() if isinstance(v, (str, int, float, bool, type(None)))})
        artifacts.append(make_artifact(ctx.work_dir, role, KIND[host], path, **facts))
        for extra in sorted(out_dir.iterdir()):
            if extra != path and extra.is_file():
                artifacts.append(make_artifact(ctx.work_dir, f"{role}:{extra.name}", ArtifactKind.other, extra))
    metrics = {"runtime": runtime, "host_runtime": host, "measured_on_target": here}
    return Manifest(stage=NAME, id="", config={}, artifacts=artifacts, metrics=metrics, notes=notes,
                    preprocessing=export.preprocessing)
