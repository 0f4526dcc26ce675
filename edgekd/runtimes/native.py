"""The runtime's own timing of the calls edgekd timed, and the Python caller's overhead as its own figure.

edgekd times each call from Python (edgekd.runtimes.timing). A runtime that times its inferences itself
(OpenVINO's InferRequest.latency, what benchmark_app reports) gives a second figure for the same calls; the
difference of the medians is what the Python caller adds (binding, output copy, interpreter).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def native_figures(session: Any, stats: Any) -> dict[str, Any] | None:
    getter = getattr(session, "native_latency_ms", None)
    if getter is None:
        return None
    values = getter(stats.n)
    if len(values) != stats.n or not values:
        return None
    arr = np.asarray(values, dtype=np.float64)
    p50 = float(np.median(arr))
    return {"source": "OpenVINO InferRequest.latency (the runtime's own timing, as benchmark_app reports)",
            "median_ms": p50, "p90_ms": float(np.percentile(arr, 90)), "p99_ms": float(np.percentile(arr, 99)),
            "caller_overhead_ms": stats.median_ms - p50,
            "caller_overhead_pct": (stats.median_ms / p50 - 1) * 100 if p50 > 0 else None}
