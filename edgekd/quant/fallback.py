"""The floating-point fallback of the qad stage, bounded in time: PTQ candidates first, QAD once.

When the quantized model misses the accuracy requirement, some layers go back to floating point. Trying a layer
set costs a full QAD schedule when it is fine-tuned, but only a calibration and one evaluation as PTQ, so:

1. the layer set the user asked for (``base_layers``) is quantized (PTQ) and, when a ``qad`` function is given,
   fine-tuned (QAD); the better of the two is that set's result. If it meets the requirement, done;
2. when it does not, the fallback is skipped if it cannot help: the FP32 model itself is below the requirement
   (no float layer set can do better than all-float), or it is disabled (``max_layers`` 0 or a budget of 0);
3. layers are ranked by sensitivity once (``rank``, on the all-INT8 PTQ model), and the top-k most sensitive
   are tried as PTQ only, k = 1 .. ``max_layers``, until one meets the requirement or the budget is spent;
4. QAD runs on one candidate only: the fewest float layers whose PTQ accuracy plus the gain QAD gave the base
   set reaches the requirement, else the most accurate PTQ candidate. It runs only when the budget has room for
   it (its cost is predicted from the base set's QAD);
5. the result is the attempt that meets the requirement with the fewest float layers (ties: higher metric,
   then QAD), else the attempt with the highest metric (ties: fewer float layers, then QAD): the best artifact
   is always kept.

Every attempt is recorded with its float layers, method, metric and cost in seconds. The budget
(``budget_s``) counts from the end of step 1 and covers ranking, PTQ candidates and the one QAD.
Framework-free: the model-building functions are passed in (see edgekd.stages.qad).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Attempt:
    """One float-layer set tried: how (ptq or qad), the metric reached on the decision split, and its cost."""

    float_layers: tuple[str, ...]
    method: str  # "ptq" | "qad"
    metric: float
    cost_s: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "float_layers": list(self.float_layers)}


@dataclass
class FallbackResult:
    """The chosen model and its attempt, every attempt in order, the sensitivity ranking, and notes that say
    why the search stopped or was skipped (empty when nothing needs saying)."""

    model: Any
    chosen: Attempt
    met: bool
    attempts: list[Attempt] = field(default_factory=list)
    ranking: list[Any] = field(default_factory=list)  # LayerSensitivity, most sensitive first
    ranking_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ignored_layers(self) -> list[str]:
        return list(self.chosen.float_layers)

    @property
    def metric(self) -> float:
        return self.chosen.metric

    @property
    def method(self) -> str:
        return self.chosen.method

    def metric_of(self, layers: Sequence[str], method: str) -> float | None:
        return next((a.metric for a in self.attempts
                     if a.float_layers == tuple(layers) and a.method == method), None)


def _pick(attempts: list[Attempt], required: float) -> Attempt:
    meeting = [a for a in attempts if a.metric >= required]
    if meeting:
        return min(meeting, key=lambda a: (len(a.float_layers), -a.metric, a.method != "qad"))
    return max(attempts, key=lambda a: (a.metric, -len(a.float_layers), a.method == "qad"))


def bounded_fallback(
    ptq: Callable[[list[str]], Any],
    qad: Callable[[list[str], Any], Any] | None,
    evaluate: Callable[[Any], float],
    rank: Callable[[Any], list[Any]],
    required: float,
    *,
    base_layers: Sequence[str] = (),
    max_layers: int = 3,
    budget_s: float = 600.0,
    fp32_metric: float | None = None,
    agree: Callable[[Any], Any] = lambda decision: decision,
    clock: Callable[[], float] = time.monotonic,
) -> FallbackResult:
    """Run steps 1-5 of the module docstring.

    ``ptq(layers)`` quantizes with ``layers`` in float; ``qad(layers, ptq_model)`` fine-tunes a copy of that
    PTQ model (None: PTQ only, e.g. 0 QAD epochs); ``evaluate(model)`` is the metric the requirement applies to
    (higher is better); ``rank(ptq_model)`` returns objects with a ``.layer`` attribute, most sensitive first.
    ``agree(decision)`` makes a time-based decision the same in every process (torchrun: rank 0's).
    """
    models: dict[tuple[tuple[str, ...], str], Any] = {}
    attempts: list[Attempt] = []

    def attempt(layers: list[str], method: str, build: Callable[[], Any]) -> Attempt:
        t0 = clock()
        model = build()
        a = Attempt(tuple(layers), method, float(evaluate(model)), clock() - t0)
        models[(a.float_layers, method)] = model
        attempts.append(a)
        return a

    def result(met_notes: list[str], ranking: list[Any] = (), ranking_s: float = 0.0) -> FallbackResult:
        best = _pick(attempts, required)
        return FallbackResult(models[(best.float_layers, best.method)], best, best.metric >= required,
                              list(attempts), list(ranking), ranking_s, met_notes)

    base = list(base_layers)
    base_ptq = attempt(base, "ptq", lambda: ptq(base))
    base_qad = attempt(base, "qad", lambda: qad(base, models[(tuple(base), "ptq")])) if qad else None
    if max(base_ptq.metric, base_qad.metric if base_qad else base_ptq.metric) >= required:
        return result([])
    if fp32_metric is not None and fp32_metric < required:
        return result([f"fallback skipped: the FP32 student ({fp32_metric:.2%}) is already below the requirement "
                       f"({required:.2%}); INT8 cannot reach it"])
    if max_layers <= 0 or budget_s <= 0:
        why = "max_fallback_layers is 0" if max_layers <= 0 else "--fallback-budget is 0"
        return result([f"fallback disabled ({why}): the better of PTQ and QAD is kept"])
    start = clock()
    ranking = [r for r in rank(models[(tuple(base), "ptq")]) if r.layer not in base]
    ranking_s = clock() - start
    notes: list[str] = []
    candidates: list[Attempt] = []
    for k in range(1, min(max_layers, len(ranking)) + 1):
        if agree(clock() - start >= budget_s):
            notes.append(f"fallback search stopped by its budget ({budget_s / 60:g} min) after {len(candidates)} "
                         f"PTQ candidate(s); the best so far is kept")
            break
        layers = base + [r.layer for r in ranking[:k]]
        candidates.append(attempt(layers, "ptq", lambda layers=layers: ptq(layers)))
        if candidates[-1].metric >= required:
            break
    if qad and candidates:
        gain = max(0.0, base_qad.metric - base_ptq.metric)
        hopeful = [a for a in candidates if a.metric + gain >= required]
        pick = hopeful[0] if hopeful else max(candidates, key=lambda a: (a.metric, -len(a.float_layers)))
        if agree(clock() - start + base_qad.cost_s <= budget_s):
            attempt(list(pick.float_layers), "qad", lambda: qad(list(pick.float_layers),
                                                                models[(pick.float_layers, "ptq")]))
        else:
            notes.append(f"QAD of the fallback candidate ({', '.join(pick.float_layers)} in float) skipped: it "
                         f"would take about {base_qad.cost_s:.0f} s, beyond the {budget_s / 60:g} min fallback "
                         f"budget; its PTQ model is used")
    return result(notes, ranking, ranking_s)
