"""Fit the roofline's efficiencies and per-layer overhead to measured latencies, and measure the fit's error
leave-one-model-out (edgekd.runtimes.calibration states the model)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

PARAMS = ("compute_efficiency", "compute_efficiency_int8", "memory_efficiency", "layer_overhead_us", "call_overhead_us")
_OVERHEADS = ("layer_overhead_us", "call_overhead_us")


@dataclass(frozen=True)
class Point:
    """One measured model at one precision, with its roofline terms at 100% efficiency."""

    model: str
    precision: str
    measured_ms: float
    compute_float_ms: float  # heavy ops running in float, at peak
    compute_int8_ms: float  # heavy ops running in int8, at peak
    memory_ms: float  # bytes at peak bandwidth
    layers: int


def predict(p: Point, theta: dict[str, float]) -> float:
    compute = p.compute_float_ms / theta["compute_efficiency"] + p.compute_int8_ms / theta["compute_efficiency_int8"]
    return (max(compute, p.memory_ms / theta["memory_efficiency"]) + p.layers * theta["layer_overhead_us"] / 1000
            + theta.get("call_overhead_us", 0.0) / 1000)


def fit(points: list[Point], start: dict[str, float]) -> dict[str, float]:
    """Robust least squares (soft L1 beyond 20%) on log(predicted / measured) (relative error, so small and large
    models weigh alike);
    efficiencies in (1e-4, 1], overheads in [0, 5000] us. A parameter no point informs keeps its start value."""
    from scipy.optimize import least_squares

    free = [k for k in PARAMS if _informed(k, points)]
    lo = np.array([0.0 if k in _OVERHEADS else 1e-4 for k in free])
    hi = np.array([5000.0 if k in _OVERHEADS else 1.0 for k in free])
    x0 = np.clip(np.array([start.get(k, 0.0) for k in free], dtype=float), lo + 1e-9, hi)
    meas = np.array([p.measured_ms for p in points])

    def residuals(x: np.ndarray) -> np.ndarray:
        theta = {**start, **dict(zip(free, x))}
        return np.log(np.array([predict(p, theta) for p in points]) / meas)

    if not free:
        return dict(start)
    best = None
    # max() makes the surface piecewise flat (a compute term hidden under the memory term has no gradient): start
    # from the prior and from a small grid of efficiencies, keep the best
    grids = [x0] + [np.array([start.get(k, 0.0) if k in _OVERHEADS else g for k in free])
                    for g in (0.02, 0.1, 0.5)] + [np.array([start.get(k, 0.0) if k in _OVERHEADS else
                                                            (0.5 if "memory" in k else 0.05) for k in free])]
    for x in grids:
        x = np.clip(x, lo + 1e-9, hi)
        res = least_squares(residuals, x, bounds=(lo, hi), x_scale="jac", ftol=1e-12, xtol=1e-12, gtol=1e-12,
                            max_nfev=2000, loss="soft_l1", f_scale=0.2)  # robust: one odd model (an int8
        # depthwise net slower than its fp32 twin) must not drag every other estimate
        if best is None or res.cost < best.cost:
            best = res
    return {**start, **{k: float(v) for k, v in zip(free, best.x)}}


def _informed(param: str, points: list[Point]) -> bool:
    if param == "compute_efficiency_int8":
        return any(p.compute_int8_ms > 0 for p in points)
    return True


def leave_one_model_out(points: list[Point], start: dict[str, float]) -> list[dict[str, Any]]:
    """Each model's points predicted by a fit on the other models only."""
    rows = []
    for model in dict.fromkeys(p.model for p in points):
        theta = fit([p for p in points if p.model != model], start)
        for p in (q for q in points if q.model == model):
            est = predict(p, theta)
            rows.append({**asdict(p), "loo_estimate_ms": est, "loo_error_pct": (est / p.measured_ms - 1) * 100})
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    errs = np.abs([r["loo_error_pct"] for r in rows])
    return {"method": "leave-one-model-out", "models": len({r["model"] for r in rows}), "points": len(rows),
            "mean_abs_error_pct": round(float(errs.mean()), 1), "max_abs_error_pct": round(float(errs.max()), 1)}
