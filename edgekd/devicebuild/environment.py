"""The environment an artifact is built for: runtime versions and the device (no runtime imported at module
level; each runtime's facts are read only when asked, and only from what is installed)."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from edgekd.fsio import short_hash
from edgekd.runtimes.identity import host_facts

# what imports each runtime ("edgekd[extra]" names it in errors)
PACKAGES = {"tensorrt": ("tensorrt", "gpu"), "openvino": ("openvino", "cpu"), "onnxruntime": ("onnxruntime", "cpu"),
            "executorch": ("executorch", "mobile"), "litert": ("ai_edge_litert", "mobile"),
            "coreml": ("coremltools", "mobile")}


def runtime_version(runtime: str) -> str | None:
    """The installed version of a runtime's package, read from package metadata (tests monkeypatch this)."""
    names = {"onnxruntime": ("onnxruntime", "onnxruntime-gpu")}.get(runtime, (PACKAGES[runtime][0],))
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def cpu_identity() -> dict[str, Any]:
    facts = host_facts()
    flags = " ".join(sorted(facts.cpu_flags))
    return {"arch": facts.arch, "cpu_vendor": facts.cpu_vendor, "cpu_model": facts.cpu_model,
            "cpu_flags_sha256": short_hash(flags, 16)}


def host_identity() -> dict[str, Any]:
    """What identifies this machine for stage ids: CPU (model, ISA flags digest) and GPU."""
    facts = host_facts()
    return {**cpu_identity(), "gpu_name": facts.gpu_name, "compute_capability": facts.compute_capability}


def current_environment(runtime: str, device: str) -> dict[str, Any]:
    """This machine's fingerprint for artifacts of `runtime` on `device` (see record.MATCH_KEYS)."""
    if runtime == "tensorrt":
        from edgekd.runtimes.tensorrt import trt_fingerprint

        return trt_fingerprint()
    env: dict[str, Any] = {f"{runtime}_version": runtime_version(runtime), "device": device, **cpu_identity()}
    if runtime == "openvino":
        env["device_name"] = openvino_device_name(device)
    return env


def openvino_device_name(device: str) -> str | None:
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    try:
        return str(core.get_property(device, "FULL_DEVICE_NAME"))
    except Exception:  # noqa: BLE001 - a device this machine lacks has no name
        return None


def versions_for_stage(runtime: str) -> dict[str, Any]:
    """What a compile / bench stage id must cover beyond its config: the runtimes it uses and this host."""
    used = dict.fromkeys([runtime, "onnxruntime", "openvino"])
    return {"runtimes": {r: runtime_version(r) for r in used}, "host": host_identity()}
