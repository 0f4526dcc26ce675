"""Latency regression gate: measure baseline A and candidate B interleaved in the same job, compare
with robust statistics, and decide pass / fail / inconclusive (exit 0 / 1 / 3).

The gate on two artifacts (run directories, bundles or model files), in three public steps
(edgekd.gate.run): `load_pair` -> `sample` -> `decide` (the decision rule), then `write_outputs`;
`run_gate` chains them. On raw callables::

    cfg = GateConfig(threshold=0.10)
    decision = decide_with_rerun(
        lambda: interleaved_samples(lambda: a.infer(x), lambda: b.infer(x), **cfg.sampler_kwargs()), cfg
    )
    result = overall(decision.stats, [latency_budget_check(decision.samples.calls_b_ms, 12.0)])
    write_junit(result, "gate.xml"); raise SystemExit(result.exit_code)

Nothing here imports torch; matplotlib is loaded only inside `plot_distributions`.
"""

from __future__ import annotations

from edgekd.gate.checks import (
    AbsoluteCheck,
    GateResult,
    accuracy_check,
    latency_budget_check,
    memory_check,
    overall,
    size_check,
)
from edgekd.gate.outputs import (
    markdown_summary, plot_distributions, report_json, write_json, write_junit, write_outputs,
)  # fmt: skip
from edgekd.gate.run import Measured, Pair, check_compatible, decide, load_pair, run_gate, sample
from edgekd.stats import (
    Decision, GateConfig, GateStats, InterleavedSamples, compare, decide_with_rerun, interleaved_samples,
)  # fmt: skip

__all__ = [
    "AbsoluteCheck", "Decision", "GateConfig", "GateResult", "GateStats", "InterleavedSamples", "Measured", "Pair",
    "accuracy_check", "check_compatible", "compare", "decide", "decide_with_rerun", "interleaved_samples",
    "latency_budget_check", "load_pair", "markdown_summary", "memory_check", "overall", "plot_distributions",
    "report_json", "run_gate", "sample", "size_check", "write_json", "write_junit", "write_outputs",
]  # fmt: skip
