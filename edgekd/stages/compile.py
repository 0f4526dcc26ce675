"""Stage 6, compile: the target runtime's own artifacts from the exported ONNX files.

- OpenVINO targets: IR for the FP32 models, and the INT8 IR converted from the quantized model.
- ONNX Runtime targets: the ONNX files with ORT's offline graph optimisations for this host applied.
- TensorRT targets: engines (INT8 from the QDQ graph, FP16 fallback), each with its environment fingerprint,
  when this machine has an NVIDIA GPU and TensorRT. Otherwise the device artifact is the QDQ ONNX (the
  device builds its engine from it) and the same files are prepared for ONNX Runtime on this host, to be
  measured there and labelled as a host substitute.
- Mobile targets (ExecuTorch, LiteRT) with the `mobile` extra installed: the files the phone runs (.pte /
  .tflite: teacher and student FP32, the INT8 student from the qad_pt2e stage's PT2E program), written by the
  bundle's writers (edgekd.export.mobile), measured here with that runtime as a host measurement. Without the
  extra: the ONNX Runtime substitute, and a note that the profile's runtime was not measured.
"""

from __future__ import annotations

import shutil

from pydantic import BaseModel, ConfigDict

from edgekd.benchmark import settings_for
from edgekd.benchmark.placement import measured_on
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
    from edgekd.export.mobile import compiled_format

    runtime = str(cfg.target["runtime"]["name"])
    fmt = compiled_format(runtime)  # a mobile target's compiled format changes with the extra: so does the id
    return versions_for_stage(runtime) | ({"compiled_format": fmt} if fmt else {})

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
    mobile = _mobile(target, parents, ctx, notes)
    if isinstance(mobile, Manifest):
        return mobile
    from edgekd.export.mobile import not_measured_note

    unmeasured = mobile or not_measured_note(runtime, target.runtime.device)
    if unmeasured:
        notes.append(unmeasured)
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
                     measured_on=measured_on(here, host, target.runtime.device if here else "CPU", target),
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
    metrics = {"runtime": runtime, "host_runtime": host, "measured_on_target": here,
               "runtime_not_measured": unmeasured}
    return Manifest(stage=NAME, id="", config={}, artifacts=artifacts, metrics=metrics, notes=notes,
                    preprocessing=export.preprocessing)


def _mobile(target: TargetProfile, parents: dict[str, Manifest], ctx, notes: list[str]) -> Manifest | str | None:
    """The .pte / .tflite files of a mobile target, when this machine can write and run them. Else the ONNX
    Runtime substitute follows: None, or why the files could not be built (a converter that cannot hold a model)."""
    from edgekd.export.mobile import LoweringFailed, can_compile, compile_mobile, mobile_format

    fmt = mobile_format(target.runtime.name)
    if fmt is None or not can_compile(fmt.runtime) or "pt2e" not in parents:
        return None
    try:
        artifacts = compile_mobile(fmt, parents, ctx.parent_dirs, ctx.work_dir)
    except LoweringFailed as exc:
        for leftover in ctx.work_dir.iterdir():
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        return (f"{fmt.runtime} {target.runtime.device} (the profile's runtime) was NOT measured: the {fmt.what} "
                f"could not be built ({exc}); the latency and accuracy are ONNX Runtime's on the ONNX files, a "
                "substitute")
    from edgekd.runtimes.host import host_arch
    from edgekd.runtimes.identity import check_target

    on_target = target.device.arch in (host_arch(), "any") and check_target(target).matches
    for art in artifacts:
        art.facts["measured_on"] = measured_on(on_target, fmt.runtime, target.runtime.device, target)
    notes.append(f"{fmt.what} files written for {target.device.name}: measured with {fmt.runtime} on this "
                 f"{host_arch()} CPU" + ("" if on_target else " (same file and delegate as the device; a host "
                                         "measurement, device latency estimated)"))
    metrics = {"runtime": fmt.runtime, "host_runtime": fmt.runtime, "measured_on_target": on_target,
               "format": fmt.suffix, "runtime_not_measured": None}
    return Manifest(stage=NAME, id="", config={}, artifacts=artifacts, metrics=metrics, notes=notes,
                    preprocessing=parents["export"].preprocessing)
