"""Calibrated roofline estimates: the profile's efficiency fields, overlays fitted by `edgekd calibrate`, and the
statement every estimate carries (its model, where its numbers came from, its measured error).

Model (edgekd.runtimes.roofline): latency = max(C_float / e_c + C_int8 / e_c8, M / e_m) + L * o + c, with C the
compute time of the heavy ops at the device's peak, M their bytes over its peak bandwidth, L the number of heavy
layers; e_c, e_c8, e_m are the fractions of peak reached (compute_efficiency, compute_efficiency_int8,
memory_efficiency), o the fixed cost per layer (layer_overhead_us) and c the fixed cost per inference call
(call_overhead_us: request dispatch and synchronisation, which dominates models of a few microseconds). A profile states them with sources;
`edgekd calibrate --target T` measures a fixed set of models on the device, fits them (scipy.optimize.least_squares
on log(estimate / measured)), and writes `calibration/T.yaml` beside the profile. `load_target` applies that
overlay. Its error is measured leave-one-model-out: each model is predicted by a fit that never saw it.
No runtime, scipy or torch at module level.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from edgekd.errors import UsageError

DEFAULTS = {"compute_efficiency": 0.3, "memory_efficiency": 0.6, "layer_overhead_us": 5.0, "call_overhead_us": 0.0}
FIELDS = ("compute_efficiency", "compute_efficiency_int8", "memory_efficiency", "layer_overhead_us", "call_overhead_us")


def overlay_path(profile_path: Path, name: str) -> Path:
    """Where the overlay of a profile lives: $EDGEKD_CALIBRATION_DIR/<name>.yaml, else calibration/<name>.yaml
    beside the profile file."""
    if env := os.environ.get("EDGEKD_CALIBRATION_DIR"):
        return Path(env) / f"{name}.yaml"
    return Path(profile_path).parent / "calibration" / f"{name}.yaml"


def apply_overlay(profile: Any, profile_path: Path) -> Any:
    """The profile with its calibration overlay's fields, sources and summary, when there is one."""
    path = overlay_path(profile_path, profile.name)
    if not path.is_file():
        return profile
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        device = {k: float(data["device"][k]) for k in FIELDS if data["device"].get(k) is not None}
        summary = dict(data["calibration"])
    except (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"calibration overlay {path} is not one edgekd calibrate wrote ({type(exc).__name__}: "
                         f"{exc}): delete it or run edgekd calibrate --target {profile.name} again") from None
    if data.get("target") != profile.name:
        raise UsageError(f"calibration overlay {path} is for target {data.get('target')!r}, not {profile.name}")
    # beside the profile: named relative to it, so a moved or copied checkout keeps every stage id (the
    # profile, with this summary, is part of the search, compile and bench stages' configs)
    summary["file"] = (str(path.relative_to(Path(profile_path).parent))
                       if path.is_relative_to(Path(profile_path).parent) else str(path))
    sources = {**profile.sources, **{k: str(v) for k, v in (data.get("sources") or {}).items() if k in device}}
    return profile.model_copy(update={"device": profile.device.model_copy(update=device), "sources": sources,
                                      "calibration": summary})


def efficiency_facts(target: Any) -> dict[str, Any]:
    d = target.device
    facts = {"compute_efficiency": d.compute_efficiency or DEFAULTS["compute_efficiency"],
             "memory_efficiency": d.memory_efficiency or DEFAULTS["memory_efficiency"]}
    if d.compute_efficiency_int8:
        facts["compute_efficiency_int8"] = d.compute_efficiency_int8
    return facts


def estimate_for_target(onnx_path: Path, target: Any, precision: str, batch: int) -> dict[str, Any]:
    """Roofline estimate for the target's device, stating its model, the source of its numbers and its measured
    error (leave-one-model-out on the calibration set; none when the profile was never calibrated)."""
    from edgekd.runtimes.roofline import estimate_latency

    d = target.device
    facts = {"peak_tops_int8": d.peak_int8_tops, "peak_tflops_fp16": d.peak_fp16_tflops,
             "peak_tflops_fp32": d.peak_fp32_tflops, "mem_bandwidth_gbs": d.memory_bandwidth_gbs,
             **efficiency_facts(target)}
    overhead_us = d.layer_overhead_us if d.layer_overhead_us is not None else DEFAULTS["layer_overhead_us"]
    est = estimate_latency(onnx_path, {k: v for k, v in facts.items() if v}, precision=precision, batch=batch,
                           layer_overhead_ms=overhead_us / 1000)
    out = est.to_dict()
    call_us = d.call_overhead_us or 0.0
    out["overhead_ms"] += call_us / 1000
    out["latency_ms"] += call_us / 1000
    cal = target.calibration
    out["model"] = ("roofline: max(compute, memory) + layers x per-layer overhead (edgekd.runtimes.roofline), "
                    f"efficiencies {', '.join(f'{k} {facts[k]:g}' for k in facts if 'efficiency' in k)}, "
                    f"overhead {overhead_us:g} us/layer + {call_us:g} us/call")
    if cal:
        out["numbers_from"] = f"calibrated by edgekd calibrate ({cal['file']}, {cal.get('fitted_at')}, on {cal.get('host')})"
        out["measured_error"] = {k: cal.get(k) for k in ("method", "models", "mean_abs_error_pct", "max_abs_error_pct")}
    else:
        out["numbers_from"] = "the profile's fields (" + "; ".join(
            f"{k}: {target.sources[k]}" for k in FIELDS if k in target.sources) + ")" if any(
            k in target.sources for k in FIELDS) else "edgekd's uncalibrated defaults"
        out["measured_error"] = None
        out["model"] += "; never compared with a measurement on this device (run edgekd calibrate on it)"
    return out
