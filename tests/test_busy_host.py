"""A latency budget missed while other programs loaded every CPU is 'inconclusive', not a verdict on the model."""

from __future__ import annotations

from edgekd.benchmark import busy_host_reason, host_load, judge
from edgekd.report.summary import exit_code_for, overall_verdict
from edgekd.targets import load_target


def _row(p90: float, cv: float, load: float | None, cpus: int = 2) -> dict:
    return {"latency": {"median_ms": p90 / 2, "p90_ms": p90, "p95_ms": p90, "p99_ms": p90, "cv": cv},
            "host_load": None if load is None else {"loadavg_1m": load, "cpus": cpus},
            "size_bytes": 10_000, "memory_bytes": 1_000_000, "top1": 0.9}


def _latency(row: dict) -> dict:
    target = load_target("intel-cpu")
    return next(b for b in judge(target, row, 0.5, measured_here=True) if b["name"].startswith("latency"))


def test_over_budget_on_a_busy_noisy_host_is_inconclusive_and_exits_0_unless_strict():
    b = _latency(_row(p90=8.0, cv=0.35, load=4.2))
    assert b["verdict"] == "inconclusive"
    assert "busy host (load average 4.2 on 2 CPUs, cv 0.35)" in b["basis"] and "edgekd bench" in b["basis"]
    assert overall_verdict([b]) == "inconclusive"
    assert exit_code_for([b], strict=False) == 0 and exit_code_for([b], strict=True) == 1


def test_over_budget_on_a_quiet_host_or_with_a_stable_measurement_fails():
    assert _latency(_row(p90=8.0, cv=0.35, load=0.8))["verdict"] == "fail"  # the host was quiet
    assert _latency(_row(p90=8.0, cv=0.03, load=4.2))["verdict"] == "fail"  # busy, but a stable measurement
    assert _latency(_row(p90=8.0, cv=0.35, load=None))["verdict"] == "fail"  # no load average known
    assert exit_code_for([_latency(_row(p90=8.0, cv=0.35, load=0.8))], strict=False) == 1


def test_within_budget_passes_however_busy_the_host():
    assert _latency(_row(p90=0.2, cv=0.5, load=9.0))["verdict"] == "pass"
    assert busy_host_reason(_row(p90=0.2, cv=0.5, load=9.0)) is not None


def test_host_load_reads_this_machine():
    load = host_load()
    assert load is None or (load["loadavg_1m"] >= 0 and load["cpus"] >= 1)
