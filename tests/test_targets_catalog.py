"""The shipped target catalog: every profile loads, every number has a source, `edgekd targets` lists all."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from edgekd.targets import available_targets, load_target

NAMES = sorted(available_targets())
BUDGET_NUMBERS = ("latency_ms", "model_size_mb", "peak_memory_mb")


def test_catalog_has_the_promised_profiles() -> None:
    assert {"intel-cpu", "cpu-ort", "jetson", "jetson-agx-orin", "raspberry-pi5", "intel-npu", "intel-igpu",
            "android-arm64"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_number_has_a_source(name: str) -> None:
    prof = load_target(name)
    assert prof.name == name, "the file name and the profile's name must agree"
    raw = yaml.safe_load(available_targets()[name].read_text())
    numbers = [k for k, v in raw["device"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    numbers += [k for k in BUDGET_NUMBERS if raw["budgets"].get(k) is not None]
    missing = [k for k in numbers if not prof.sources.get(k, "").strip()]
    assert not missing, f"{name}: no sources entry for {missing}"
    assert prof.budgets.model_class.strip() and prof.budgets.latency_ms is not None
    if prof.device.identity is not None:  # what the identity checks, and why that is this device
        assert prof.sources.get("identity", "").strip(), f"{name}: no sources entry for its identity"
    from edgekd.runtimes.calibration import FIELDS  # a calibration overlay brings its own sourced fields

    assert set(prof.sources) <= set(numbers) | {"peak_int8_tops", "peak_fp16_tflops", "peak_fp32_tflops",
                                                "identity", *FIELDS}, \
        f"{name}: a source for a number the profile does not hold"


@pytest.mark.parametrize("name", NAMES)
def test_budget_names_a_model_that_fails_it(name: str) -> None:
    """A budget no realistic model could fail is a defect: each latency source names what fails it."""
    text = load_target(name).sources["latency_ms"].lower()
    assert "fail" in text or "exceed" in text, f"{name}: the latency budget's source names no model that fails it"


def test_targets_command_lists_all() -> None:
    from edgekd.cli.app import _register, app

    _register()
    res = CliRunner().invoke(app, ["targets", "--json"])
    assert res.exit_code == 0, res.output
    assert sorted(p["name"] for p in json.loads(res.output)) == NAMES
