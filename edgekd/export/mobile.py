"""The files a mobile profile's runtime runs, written by the compile stage so that bench measures them.

A target whose runtime is ExecuTorch (`.pte`, XNNPACK delegate) or LiteRT (`.tflite`) runs those files on the
phone, not the QDQ ONNX. When the runtime's package (the `mobile` extra) is installed, the compile stage lowers
the fine-tuned teacher and the distilled student (FP32) and the qad_pt2e stage's INT8 program with the bundle's
own writers (edgekd.bundle.mobile.lower_pte / convert_tflite: there is one writer per format), and bench runs
them with that runtime on this CPU: the same file and delegate as on the phone, a *host* measurement (this
machine is not the device, edgekd.runtimes.identity), beside the device's roofline estimate. The bundle then
copies these files instead of lowering the student again.

Without the package the compile stage keeps the ONNX Runtime substitute, and every output says that the
profile's runtime was not measured and which extra to install (`not_measured_note`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.errors import UsageError
from edgekd.manifest import Artifact, ArtifactKind, Manifest, make_artifact


@dataclass(frozen=True)
class MobileFormat:
    runtime: str
    suffix: str  # "pte" / "tflite" (the bundle's format name for it too)
    kind: ArtifactKind
    modules: tuple[str, ...]  # what lowering and running need (all of them)
    what: str


FORMATS: dict[str, MobileFormat] = {
    "executorch": MobileFormat("executorch", "pte", ArtifactKind.pte, ("executorch", "torch"),
                               "ExecuTorch .pte (XNNPACK delegate)"),
    "litert": MobileFormat("litert", "tflite", ArtifactKind.tflite, ("litert_torch", "ai_edge_litert", "torch"),
                           "LiteRT .tflite"),
}
NOT_RUNNABLE_HERE = {"coreml": "Core ML runs only on Apple OSes (macOS/iOS): nothing here can run the .mlpackage"}
INSTALL = "pip install 'edgekd[mobile]'"


def mobile_format(runtime: str) -> MobileFormat | None:
    return FORMATS.get(runtime)


def can_compile(runtime: str) -> bool:
    """Whether this machine can write and run the mobile files of `runtime` (no import happens)."""
    from edgekd.runtimes.host import has_module

    fmt = FORMATS.get(runtime)
    return fmt is not None and all(has_module(m) for m in fmt.modules)


def compiled_format(runtime: str) -> str | None:
    """What the compile stage writes here for a target of `runtime` (part of its stage id): the mobile format,
    or the ONNX Runtime substitute; None for a runtime that is not a mobile one."""
    if runtime in FORMATS:
        return FORMATS[runtime].suffix if can_compile(runtime) else "onnx (onnxruntime substitute)"
    return None


def not_measured_note(runtime: str, device: str) -> str | None:
    """One plain sentence when the profile's own runtime was not measured here (None when it was, or could not
    matter): what was measured instead and what to install."""
    if runtime in NOT_RUNNABLE_HERE:
        return (f"{runtime} (the profile's runtime) was not measured: {NOT_RUNNABLE_HERE[runtime]}; the numbers "
                "are ONNX Runtime's on the exported ONNX files, a substitute")
    fmt = FORMATS.get(runtime)
    if fmt is None or can_compile(runtime):
        return None
    from edgekd.runtimes.host import has_module

    missing = [m for m in fmt.modules if not has_module(m)]
    return (f"{runtime} {device} (the profile's runtime) was NOT measured: the mobile extra is not installed "
            f"(no {', '.join(missing)}), so no {fmt.what} was built and the latency and accuracy are ONNX Runtime's "
            f"on the ONNX files (QDQ for INT8), a substitute; install it ({INSTALL}) and rerun to measure the "
            f".{fmt.suffix} the phone runs")


class LoweringFailed(UsageError):
    """A model the mobile converter cannot hold; the compile stage falls back to the ONNX substitute."""


def _lower(fmt: MobileFormat, model: Any, example: Any, dst: Path, route: str | None) -> dict[str, Any]:
    from edgekd.bundle import mobile
    from edgekd.quant import pt2e

    try:
        if fmt.suffix == "pte":
            model = pt2e.fold_weight_quantize(model) if route is not None else model
            return mobile.lower_pte(model, example, dst)
        return mobile.convert_tflite(model, example, dst, route)
    except UsageError as exc:
        raise LoweringFailed(str(exc)) from None
    except Exception as exc:  # converters raise many types; the stage falls back and says why
        raise LoweringFailed(f"{fmt.what}: {mobile.fail_text(exc)}") from None


def compile_mobile(fmt: MobileFormat, parents: dict[str, Manifest], parent_dirs: dict[str, Path],
                   out_dir: Path) -> list[Artifact]:
    """Teacher and student FP32 and the INT8 student (the qad_pt2e program) as `fmt` files under out_dir/<role>/.
    Raises LoweringFailed naming the model and the reason when a converter cannot hold one."""
    import torch

    from edgekd.bundle.mobile import pick_route
    from edgekd.model_roles import ROLE_PRECISION
    from edgekd.models.checkpoint import load_edgekd_checkpoint
    from edgekd.quant import pt2e

    pt2e_m = parents["pt2e"]
    route = pick_route([a.name for a in pt2e_m.artifacts], fmt.suffix)
    if route is None:
        raise LoweringFailed(f"the qad_pt2e stage has no INT8 program for {fmt.what}")
    sources = {"teacher_fp32": ("teacher", "model"), "student_fp32": ("student", "model"),
               "student_int8": ("pt2e", route)}
    from edgekd.stages.metrics import metrics_of

    routes = metrics_of(pt2e_m).routes
    artifacts = []
    for role, (parent, name) in sources.items():
        src = parent_dirs[parent] / parents[parent].artifact(name).path
        if role == "student_int8":
            model, facts = pt2e.load_program(src), {"quantized_by": route, "reference": f"pytorch_pt2e:{route}",
                                                    "val_top1": routes[route]["int8_top1"],
                                                    "int8_kept": routes[route]["kept"]}
        else:
            model, facts = load_edgekd_checkpoint(src)[0].eval(), {}
        pre = parents[parent].preprocessing  # each model at its own input size (a student may take smaller ones)
        example = torch.zeros(1, pre.channels, *pre.input_size)
        dst = out_dir / role / f"model.{fmt.suffix}"
        try:
            facts.update(_lower(fmt, model, example, dst, route if role == "student_int8" else None))
        except LoweringFailed as exc:
            raise LoweringFailed(f"{role}: {exc}") from None
        artifacts.append(make_artifact(out_dir, role, fmt.kind, dst, role=role, precision=ROLE_PRECISION[role],
                                       runtime=fmt.runtime, source=f"{parent}/{parents[parent].artifact(name).path}",
                                       measured_on="host", device="CPU", device_artifact=True, format=fmt.suffix,
                                       **facts))
    return artifacts
