"""Where an artifact for a target is measured on this machine (the target's runtime and device, or a host
runtime as a labelled substitute) and at which precision."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from edgekd.targets import TargetProfile


class MeasurePlan(BaseModel):
    """Where an artifact for `target` is measured on this machine, and why."""

    model_config = ConfigDict(frozen=True)

    runtime: str
    device: str
    on_target: bool  # False: a host runtime substitutes; device latency is estimated
    reason: str = ""


def _target_hardware_here(target: TargetProfile) -> bool:
    """Whether this machine has the target's kind of hardware (so a missing runtime is the user's to install)."""
    from edgekd.runtimes import runtime_class
    from edgekd.runtimes.host import host_arch, nvidia_gpu_here
    from edgekd.runtimes.identity import check_target

    r = target.runtime
    if target.device.arch not in (host_arch(), "any") or not check_target(target).matches:
        return False
    rt = runtime_class(r.name)
    if rt.runs_on_host_cpu(r.device):
        return True
    return rt.needs_nvidia_gpu(r.device) and nvidia_gpu_here()


def plan_measurement(target: TargetProfile, allow_substitute: bool = True) -> MeasurePlan:
    """Measure on the target's runtime and device when this machine has them; else (when allowed) on a host
    runtime, labelled as a substitute. A runtime missing on hardware that could run it is MissingExtra."""
    from edgekd.errors import MissingExtra, UsageError
    from edgekd.runtimes import runtime_class
    from edgekd.runtimes.host import has_module, host_arch

    r = target.runtime
    rt = runtime_class(r.name)
    package, extra = rt.package(), rt.extra_for(r.device)
    if target.host_measurable:
        return MeasurePlan(runtime=r.name, device=r.device, on_target=True)
    hardware = _target_hardware_here(target)
    if hardware and not has_module(package):
        raise MissingExtra(package, extra, f"target {target.name} runs {r.name} on {r.device}, which this machine has")
    from edgekd.runtimes.identity import check_target

    ident = check_target(target)
    why = (f"target {target.name} runs {r.name} on {r.device} ({target.device.name}, {target.device.arch}); this "
           f"machine ({host_arch()}) " + (f"is not that device ({ident.why})" if not ident.matches
                                          else "lacks that device"))
    if not allow_substitute:
        raise UsageError(why)
    # the same runtime on this CPU first (OpenVINO; ExecuTorch/LiteRT run the phone's file with the same XNNPACK
    # delegate on x86: a host measurement), then ONNX Runtime and OpenVINO on the ONNX files
    same = (r.name,) if rt.runs_on_host_cpu("CPU") or rt.host_stand_in and has_module(package) else ()
    for name in dict.fromkeys(same + ("onnxruntime", "openvino")):
        if has_module(name):
            return MeasurePlan(runtime=name, device="CPU", on_target=False,
                               reason=f"{why}: measured with {name} on this CPU instead, device latency estimated")
    raise MissingExtra("onnxruntime", "cpu", f"no runtime here to measure on instead of {r.name} {r.device}")


def measured_on(on_target: bool, runtime: str, device: str, target: TargetProfile) -> str:
    """How a measurement relates to the target's device (issue 16): "target" (this machine is the device);
    "host" (it is not, but the profile's own runtime ran the same file on the same kind of device: OpenVINO on
    a CPU that does not match the profile's, a .pte through ExecuTorch's XNNPACK on x86); "host substitute"
    (another runtime or device type stood in, e.g. ONNX Runtime for TensorRT)."""
    if on_target:
        return "target"
    from edgekd.runtimes import runtime_class

    r = target.runtime
    same_device = device == r.device or runtime_class(r.name).host_stand_in
    return "host" if runtime == r.name and same_device else "host substitute"


def choose_precision(target: TargetProfile, artifact_precision: str, runtime: str, on_target: bool,
                     label: str) -> str:
    """The precision to run an artifact at for `target`: its own, or fp16 for an fp32 model on a runtime that
    converts (OpenVINO, TensorRT) when the target allows fp16 but not fp32. Anything else is a UsageError."""
    from edgekd.errors import UsageError

    allowed = target.precisions_allowed
    if artifact_precision in allowed or not on_target:
        return artifact_precision
    from edgekd.runtimes import runtime_class

    if artifact_precision == "fp32" and "fp16" in allowed and runtime_class(runtime).converts_to_fp16:
        return "fp16"
    raise UsageError(f"target {target.name} ({target.runtime.name} on {target.runtime.device}) runs "
                     f"{', '.join(allowed)} only; {label} is {artifact_precision}: pick another --role or target")
