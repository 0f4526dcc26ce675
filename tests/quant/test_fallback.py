"""The bounded floating-point fallback: PTQ-only candidates, QAD once, a time budget, and a skip when the FP32
model is already below the requirement (edgekd.quant.fallback)."""

from __future__ import annotations

import copy

import pytest

from edgekd.quant import QuantSpec, bounded_fallback, layer_sensitivity, quantize

torch = pytest.importorskip("torch")


def _float_weights(model) -> int:
    """Weighted layers whose weight quantizer NNCF did not insert (layers kept in float): 3 weighted layers."""
    from nncf.torch.function_hook.wrapper import get_hook_storage

    return 3 - sum(name.startswith("pre_hooks.") for name, _ in get_hook_storage(model).named_hooks())


class Recorder:
    """PTQ on the tiny net; a stand-in QAD that marks a copy as fine-tuned (metric + `qad_gain`); a fake clock
    advanced by each call's pretended cost; the metric is 0.1 per float layer (+ the QAD gain)."""

    def __init__(self, trained, calib, example, data, qad_gain=0.0, ptq_s=1.0, qad_s=5.0):
        self.trained, self.calib, self.example, self.data = trained, calib, example, data
        self.qad_gain, self.ptq_s, self.qad_s = qad_gain, ptq_s, qad_s
        self.now, self.ptq_calls, self.qad_calls = 0.0, [], []

    def ptq(self, layers):
        self.ptq_calls.append(list(layers))
        self.now += self.ptq_s
        spec = QuantSpec(subset_size=32, min_calibration=32, ignored_layers=layers)
        return quantize(self.trained, self.calib, spec, self.example)

    def qad(self, layers, base):
        self.qad_calls.append(list(layers))
        self.now += self.qad_s
        model = copy.deepcopy(base)
        model.qad_done = True
        return model

    def evaluate(self, model) -> float:
        return 0.1 * _float_weights(model) + (self.qad_gain if getattr(model, "qad_done", False) else 0.0)

    def rank(self, model):
        return layer_sensitivity(model, self.trained, [self.data["x_eval"][:64]])

    def run(self, required, **kw):
        kw.setdefault("max_layers", 3)
        return bounded_fallback(self.ptq, self.qad, self.evaluate, self.rank, required, clock=lambda: self.now, **kw)


@pytest.fixture
def rec(trained, calib, example, data):
    return Recorder(trained, calib, example, data)


def test_no_fallback_when_the_all_int8_model_meets_the_requirement(rec):
    result = rec.run(0.0)
    assert result.met and result.ignored_layers == [] and result.method == "qad"
    assert rec.ptq_calls == [[]] and rec.qad_calls == [[]]
    assert [(a.method, a.float_layers) for a in result.attempts] == [("ptq", ()), ("qad", ())]


def test_candidates_are_ptq_only_and_qad_runs_once_on_the_chosen_set(rec):
    result = rec.run(0.2 - 1e-9)  # holds with 2 float layers
    order = [r.layer for r in result.ranking]
    assert rec.ptq_calls == [[], order[:1], order[:2]], "PTQ for each candidate, most sensitive first"
    assert rec.qad_calls == [[], order[:2]], "QAD on the base set and on one candidate only"
    assert result.met and result.ignored_layers == order[:2]
    assert [(len(a.float_layers), a.method) for a in result.attempts] == [(0, "ptq"), (0, "qad"), (1, "ptq"),
                                                                           (2, "ptq"), (2, "qad")]
    assert all(a.cost_s > 0 for a in result.attempts)
    assert [a.cost_s for a in result.attempts if a.method == "qad"] == [pytest.approx(5.0)] * 2


def test_qad_goes_to_the_fewest_float_layers_its_gain_can_lift(trained, calib, example, data):
    rec = Recorder(trained, calib, example, data, qad_gain=0.15)
    result = rec.run(0.25 - 1e-9)  # PTQ needs 3 float layers; PTQ + QAD's gain needs 1
    order = [r.layer for r in result.ranking]
    assert rec.ptq_calls == [[], order[:1], order[:2], order[:3]]
    assert rec.qad_calls == [[], order[:1]]
    assert result.met and result.ignored_layers == order[:1] and result.method == "qad"


def test_budget_stops_the_search_and_keeps_the_best_so_far(rec):
    # the ranking is free on the fake clock, each PTQ candidate takes 1 s: a 1.5 s budget admits two of them
    result = rec.run(1.0, budget_s=1.5)  # unreachable requirement
    order = [r.layer for r in result.ranking]
    assert rec.ptq_calls == [[], order[:1], order[:2]]
    assert rec.qad_calls == [[]], "no room left in the budget for a second QAD"
    assert not result.met and result.ignored_layers == order[:2] and result.metric == pytest.approx(0.2)
    assert any("stopped by its budget" in n for n in result.notes)
    assert any("QAD of the fallback candidate" in n and "skipped" in n for n in result.notes)


def test_budget_zero_disables_the_fallback(rec):
    result = rec.run(1.0, budget_s=0)
    assert rec.ptq_calls == [[]] and not result.met and result.ranking == []
    assert any("fallback disabled" in n for n in result.notes)


def test_skipped_when_the_fp32_model_is_below_the_requirement(rec):
    result = rec.run(0.9, fp32_metric=0.35)
    assert rec.ptq_calls == [[]] and rec.qad_calls == [[]] and result.ranking == []
    assert not result.met and result.ignored_layers == []
    assert result.notes == ["fallback skipped: the FP32 student (35.00%) is already below the requirement "
                            "(90.00%); INT8 cannot reach it"]


def test_ptq_only_when_there_is_no_qad(rec):
    result = bounded_fallback(rec.ptq, None, rec.evaluate, rec.rank, 0.1 - 1e-9, clock=lambda: rec.now)
    assert result.met and result.method == "ptq" and len(result.ignored_layers) == 1
    assert rec.qad_calls == []


def test_fallback_budget_option_reaches_the_qad_stage():
    from edgekd.plan import build_specs, validate_options
    from edgekd.targets import load_target

    for minutes in (0.0, 2.5):
        specs = build_specs(validate_options({"fallback_budget": minutes}), load_target("intel-cpu"), channels=1)
        qad = next(s for s in specs if s.name == "qad")
        assert qad.config.fallback_budget_min == minutes
    assert validate_options({}).fallback_budget == 10.0
