"""Measure a compiled artifact (latency, accuracy, memory, size) and judge it against a target's budgets.

No torch here: `edgekd bench` runs this on a device that has only its runtime installed. When the target's
runtime or device is not on this machine, the same artifact is measured on a host runtime and the device's
latency is *estimated* from a roofline model; estimated numbers are labelled everywhere and never mixed with
measured ones.

- placement: where to measure (`plan_measurement`) and at which precision (`choose_precision`);
- measurement: `measure`, `paired_speedup`, `estimate`, `spread`, `eval_inputs`, `settings_for`;
- budgets: `judge` (one verdict per budget), `required_top1`, `chance_checks`, `busy_host_reason`;
- run: `run_bench`, the whole of `edgekd bench` without the CLI.
"""

from __future__ import annotations

from edgekd.benchmark.budgets import (
    busy_host_reason, chance_checks, chance_level, judge, layers_not_in_precision, required_top1,
)  # fmt: skip
from edgekd.benchmark.measurement import (
    TimingConfig, estimate, eval_inputs, host_load, measure, paired_speedup, settings_for, spread,
)  # fmt: skip
from edgekd.benchmark.placement import MeasurePlan, choose_precision, plan_measurement
from edgekd.benchmark.run import run_bench, target_for

__all__ = [
    "MeasurePlan", "TimingConfig", "busy_host_reason", "chance_checks", "chance_level", "choose_precision",
    "estimate", "eval_inputs", "host_load", "judge", "layers_not_in_precision", "measure", "paired_speedup",
    "plan_measurement", "required_top1", "run_bench", "settings_for", "spread", "target_for",
]  # fmt: skip
