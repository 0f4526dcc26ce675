"""Judge a measured artifact against a target's budgets: one verdict per budget, "estimated" when the number
is an estimate, "inconclusive" when a busy host may explain a failure, and chance-level checks."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekd.accuracy import AccuracyRequirement
from edgekd.runtimes.timing import PERCENTILE_FIELDS
from edgekd.targets import TargetProfile


def busy_host_reason(row: dict[str, Any], cv_limit: float = 0.10) -> str | None:
    """Why a measured latency cannot be judged, or None: the host was loaded beyond its CPUs (1-minute load
    average above the CPU count) *and* the measurement itself was noisy (cv above `cv_limit`). Either alone is
    not enough: a quiet, stable measurement over budget is a real failure."""
    load, lat = row.get("host_load"), row.get("latency") or {}
    cv = lat.get("cv")
    if not load or cv is None or load["loadavg_1m"] <= load["cpus"] or cv <= cv_limit:
        return None
    return (f"measured on a busy host (load average {load['loadavg_1m']:.1f} on {load['cpus']} CPUs, "
            f"cv {cv:.2f}): rerun `edgekd bench` on a quiet machine")


def _verdict(ok: bool, estimated: bool) -> str:
    word = "pass" if ok else "fail"
    return f"estimated {word}" if estimated else word


def top1_interval(top1: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a top-1 measured on `n` images (scipy's binomial test)."""
    from scipy.stats import binomtest

    ci = binomtest(int(round(top1 * n)), n).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def judge(target: TargetProfile, final: dict[str, Any], required_top1: float | None, measured_here: bool,
          n_images: int | None = None) -> list[dict[str, Any]]:
    """One verdict per budget for the final artifact (`final` is its row); `n_images`: how many images its
    top-1 was measured on (the accuracy check then states its 95% interval)."""
    b = target.budgets
    out: list[dict[str, Any]] = []
    if b.latency_ms is not None:
        key = PERCENTILE_FIELDS[b.latency_percentile]
        if measured_here and final.get("latency"):
            value, basis = final["latency"][key], "measured"
        else:
            est = final.get("estimate") or {}
            value, basis = est.get("latency_ms"), "estimated (roofline; percentile not modelled)"
        if value is not None:
            est_flag = basis != "measured"
            verdict = _verdict(value <= b.latency_ms, est_flag)
            busy = busy_host_reason(final) if verdict == "fail" else None
            if busy:  # over budget, but the neighbours' load may be why: not a verdict on the model
                verdict, basis = "inconclusive", busy
            out.append({"name": f"latency {b.latency_percentile}", "limit": b.latency_ms, "value": value,
                        "limit_text": f"<= {b.latency_ms} ms", "value_text": f"{value:.3f} ms", "basis": basis,
                        "verdict": verdict})
    if b.model_size_mb is not None and final.get("size_bytes") is not None:
        # the file the target deploys (stages.bench.deployed_size): its size is the same here as on the device
        mb, size_measured = final["size_bytes"] / 1e6, final.get("size_measured", measured_here)
        what = final.get("size_file", final.get("file", "the artifact"))
        basis = f"{'measured' if size_measured else 'estimated'}: {what}" + \
            (f" ({final['size_of']})" if final.get("size_of") else "")
        out.append({"name": "model size", "limit": b.model_size_mb, "value": mb, "limit_text": f"<= {b.model_size_mb} MB",
                    "value_text": f"{mb:.3f} MB", "basis": basis,
                    "verdict": _verdict(mb <= b.model_size_mb, not size_measured)})
    if b.peak_memory_mb is not None and final.get("memory_bytes") is not None:
        mb = final["memory_bytes"] / 1e6
        basis = "measured (peak resident memory added by loading and running the model, fresh process)" \
            if measured_here else \
            "estimated (host runtime's resident memory)"
        out.append({"name": "memory", "limit": b.peak_memory_mb, "value": mb, "limit_text": f"<= {b.peak_memory_mb} MB",
                    "value_text": f"{mb:.1f} MB", "basis": basis,
                    "verdict": _verdict(mb <= b.peak_memory_mb, not measured_here)})
    if required_top1 is not None and final.get("top1") is not None:
        basis = "measured" if measured_here else f"measured on the host runtime ({final.get('runtime')}), same artifact"
        ok, text, extra = final["top1"] >= required_top1, f"{final['top1']:.2%}", {}
        if n_images:  # a verdict on a few hundred images is close to a coin toss near the limit: say how close
            lo, hi = top1_interval(final["top1"], n_images)
            text += f" (95% CI {lo:.1%}-{hi:.1%}, {n_images} images)"
            extra = {"interval_95": [lo, hi], "images": n_images}
            if lo <= required_top1 <= hi:
                basis += ("; the requirement lies inside this top-1's 95% interval: the test split is too small "
                          "to tell a miss (or a pass) from noise")
        out.append({"name": "accuracy (top-1)", "limit": required_top1, "value": final["top1"],
                    "limit_text": f">= {required_top1:.2%}", "value_text": text, "basis": basis,
                    "verdict": "pass" if ok else "fail", **extra})
    return out


def layers_not_in_precision(runtime_facts: dict[str, Any], float_layers: list[str] = ()) -> list[dict[str, Any]]:
    """Heavy layers that ran in another precision than asked: from the runtime's `layer_precisions` (OpenVINO
    reads them back from the compiled model); a runtime that cannot say (ONNX Runtime) gets the layers the qad
    stage left in float on purpose."""
    lp = runtime_facts.get("layer_precisions")
    if isinstance(lp, dict):
        return [{"name": x["name"], "type": x.get("type"), "precision": x["precision"]} for x in lp["mismatched"]]
    return [{"name": name, "type": None, "precision": "fp32", "source": "qad float_layers"} for name in float_layers]


def chance_level(num_classes: int, n: int) -> float:
    """Top-1 that guessing reaches within noise: 1/K plus two standard errors of a binomial at p = 1/K over
    the n evaluated images. A model at or below it has not learned."""
    p = 1.0 / max(num_classes, 1)
    return p + 2.0 * float(np.sqrt(p * (1 - p) / max(n, 1)))


def chance_checks(teacher_top1: float | None, final_top1: float | None, num_classes: int, n: int,
                  ) -> list[dict[str, Any]]:
    """Failed checks for a teacher or final model at chance level (none when both learned): a chance-level
    student must never pass, even when a requirement relative to a chance-level teacher would let it."""
    limit = chance_level(num_classes, n)
    out = []
    for who, top1 in (("teacher", teacher_top1), ("final model", final_top1)):
        if top1 is not None and top1 <= limit:
            out.append({"name": f"{who} above chance", "limit": limit, "value": top1,
                        "limit_text": f"> {limit:.2%}", "value_text": f"{top1:.2%}",
                        "basis": f"chance 1/{num_classes} + 2 standard errors over {n} images",
                        "verdict": "fail", "message": f"the {who} did not learn: top-1 {top1:.2%} is at chance "
                        f"level (<= {limit:.2%} for {num_classes} classes on {n} images)"})
    return out


def required_top1(target: TargetProfile, teacher_top1: float | None,
                  recorded: AccuracyRequirement | None = None) -> float | None:
    """The top-1 the final artifact must reach: by the requirement the run recorded (its own --max-drop /
    --accuracy-floor, as `compress` judged it), else by the profile's accuracy defaults (edgekd.accuracy); None
    when nothing that applies is asked."""
    return (recorded or target.accuracy).required_or_none(teacher_top1)
