"""Calibrated estimates: the fit recovers known fields, leave-one-model-out error is measured, the overlay is
applied by load_target, every estimate states its model and error, and calibrate refuses another device."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgekd.calibrate.fit import Point, fit, leave_one_model_out, predict, summary
from edgekd.errors import UsageError
from edgekd.targets import available_targets, load_target

TRUE = {"compute_efficiency": 0.12, "compute_efficiency_int8": 0.05, "memory_efficiency": 0.3,
        "layer_overhead_us": 8.0}
START = {"compute_efficiency": 0.3, "compute_efficiency_int8": 0.3, "memory_efficiency": 0.6, "layer_overhead_us": 5.0}


def synthetic_points() -> list[Point]:
    shapes = [("a", 0.02, 0.01, 20), ("b", 0.05, 0.02, 32), ("c", 0.09, 0.03, 56), ("d", 0.3, 0.2, 20),
              ("e", 0.001, 0.002, 4)]
    pts = []
    for name, c, m, layers in shapes:
        for prec in ("fp32", "int8"):
            cf, c8 = (c, 0.0) if prec == "fp32" else (c * 0.02, c * 0.1)
            p = Point(name, prec, 1.0, cf, c8, m, layers)
            pts.append(Point(name, prec, predict(p, TRUE), cf, c8, m, layers))
    return pts


def test_fit_recovers_the_fields_and_loo_error_is_small_on_model_data() -> None:
    pytest.importorskip("scipy")
    pts = synthetic_points()
    theta = fit(pts, START)
    for p in pts:
        assert predict(p, theta) == pytest.approx(p.measured_ms, rel=0.02)
    rows = leave_one_model_out(pts, START)
    assert len(rows) == len(pts) and summary(rows)["max_abs_error_pct"] < 15  # a left-out model may hold the only evidence of a term
    # the prior fields are far off the same data: the fit is what brings the error down
    assert max(abs(predict(p, START) / p.measured_ms - 1) for p in pts) > 0.5


def _overlay(tmp_path: Path, name: str = "intel-cpu", **device: float) -> Path:
    data = {"target": name, "device": {**TRUE, **device}, "sources": {k: "fitted (test)" for k in TRUE},
            "calibration": {"method": "leave-one-model-out", "models": 5, "mean_abs_error_pct": 7.5,
                            "max_abs_error_pct": 21.0, "fitted_at": "2026-12-01", "host": "test host", "points": []}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_overlay_is_applied_and_estimates_state_model_and_error(tmp_path, monkeypatch, conv_onnx) -> None:
    from edgekd.runtimes.calibration import estimate_for_target

    monkeypatch.setenv("EDGEKD_CALIBRATION_DIR", str(tmp_path / "none"))
    prior = load_target("intel-cpu")
    assert prior.calibration is None and prior.device.compute_efficiency == 0.3
    est = estimate_for_target(conv_onnx, prior, "fp32", 1)
    assert est["measured_error"] is None and "never compared with a measurement" in est["model"]
    assert "Prior, not measured" in est["numbers_from"]

    _overlay(tmp_path)
    monkeypatch.setenv("EDGEKD_CALIBRATION_DIR", str(tmp_path))
    cal = load_target("intel-cpu")
    assert cal.device.compute_efficiency == TRUE["compute_efficiency"] and cal.sources["layer_overhead_us"] == "fitted (test)"
    from edgekd.targets import load_target_file  # calibrate starts from the profile's own fields, not an older fit

    assert load_target_file(available_targets()["intel-cpu"], overlay=False).device.compute_efficiency == 0.3
    est2 = estimate_for_target(conv_onnx, cal, "fp32", 1)
    assert est2["measured_error"] == {"method": "leave-one-model-out", "models": 5, "mean_abs_error_pct": 7.5,
                                      "max_abs_error_pct": 21.0}
    assert "calibrated by edgekd calibrate" in est2["numbers_from"] and est2["latency_ms"] > est["latency_ms"]


def test_overlay_for_another_target_or_damaged_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEKD_CALIBRATION_DIR", str(tmp_path))
    _overlay(tmp_path, "cpu-ort").rename(tmp_path / "intel-cpu.yaml")
    with pytest.raises(UsageError, match="is for target 'cpu-ort', not intel-cpu"):
        load_target("intel-cpu")
    (tmp_path / "intel-cpu.yaml").write_text("target: intel-cpu\n")
    with pytest.raises(UsageError, match="not one edgekd calibrate wrote"):
        load_target("intel-cpu")


def test_calibrate_refuses_a_machine_that_is_not_the_device() -> None:
    from edgekd.calibrate.measure import calibrate

    with pytest.raises(UsageError, match="this machine is not jetson's device"):
        calibrate("jetson")


def test_shipped_profiles_state_the_estimate_fields_with_sources() -> None:
    for name in available_targets():
        p = load_target(name)
        for key in ("compute_efficiency", "memory_efficiency", "layer_overhead_us"):
            assert getattr(p.device, key) is not None and p.sources.get(key), f"{name}: {key}"
