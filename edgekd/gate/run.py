"""Run the gate end to end on two artifacts: load both sides, sample them interleaved, decide.

Three steps, each public:

* `load_pair`: resolve baseline and candidate (run directory, bundle or model file), check that they are two
  versions of one model compiled for the target's runtime, verify their sha256, load both sessions with the
  target's settings, and top-1 each on the same held-out images when an eval set is known.
* `sample`: the interleaved latency samples (ABBA rounds, edgekd.stats.sampling) with a fresh rerun when the
  verdict is inconclusive because of noise (edgekd.stats.decide_with_rerun), then the candidate's size
  and memory (edgekd.runtimes.memory, the definition bench uses).
* `decide`: the decision rule. The latency comparison (edgekd.stats.paired, rule in its docstring) is combined
  with the absolute checks: the candidate's latency at the profile's percentile against the budget, its size
  and memory against budgets, and its top-1 against the baseline's (two-sided tolerance). Any failed check
  or a failed comparison fails the gate; otherwise an inconclusive comparison makes it inconclusive; else
  pass (edgekd.gate.checks.overall).

The gate never judges on estimates: a target this machine cannot run is a UsageError (exit 2) with the reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.artifacts import Candidate, Resolved, candidate_for, pick_role, resolve, verify, verify_file
from edgekd.benchmark import choose_precision, plan_measurement, settings_for
from edgekd.errors import MissingExtra, UsageError
from edgekd.gate.checks import (
    AbsoluteCheck, GateResult, accuracy_check, latency_budget_check, memory_check, overall, requirement_check,
    size_check,
)  # fmt: skip
from edgekd.stats import Decision, GateConfig, decide_with_rerun, interleaved_samples
from edgekd.targets import TargetProfile, load_target


def _side(label: str, path: Path, eval_set: Path | None) -> Resolved:
    try:
        return resolve(path, eval_set)
    except UsageError as exc:
        raise UsageError(f"{label} {exc}") from None


def _runnable_here(target: TargetProfile):
    try:
        return plan_measurement(target, allow_substitute=False)
    except MissingExtra:
        raise
    except UsageError as exc:
        raise UsageError(f"the gate never judges on estimates and cannot run here: {exc}; run the gate on a "
                         "machine with that device (e.g. a self-hosted CI runner)") from None


def check_compatible(a: Resolved, b: Resolved, role_a: str, role_b: str, runtime: str) -> None:
    """Same input shape, same classes, artifacts compiled for the same runtime (the target's)."""
    if a.input_shape and b.input_shape and a.input_shape != b.input_shape:
        raise UsageError(f"baseline and candidate take different input shapes: baseline {list(a.input_shape)}, "
                         f"candidate {list(b.input_shape)}: the gate compares two versions of one model")
    if a.classes is not None and b.classes is not None and list(a.classes) != list(b.classes):
        if len(a.classes) != len(b.classes):
            diff = f"{len(a.classes)} vs {len(b.classes)} classes"
        else:
            i = next(i for i, (x, y) in enumerate(zip(a.classes, b.classes)) if x != y)
            diff = f"class {i} is '{a.classes[i]}' in the baseline, '{b.classes[i]}' in the candidate"
        raise UsageError(f"baseline and candidate have different class lists ({diff}): their accuracies and "
                         "outputs are not comparable")
    comp_a = {c.compiled_for for c in a.candidates if c.role == role_a and c.compiled_for}
    comp_b = {c.compiled_for for c in b.candidates if c.role == role_b and c.compiled_for}
    if comp_a and comp_b and not comp_a & comp_b:
        raise UsageError(f"baseline and candidate are compiled for different runtimes (baseline: "
                         f"{', '.join(sorted(comp_a))}; candidate: {', '.join(sorted(comp_b))}): compile both for "
                         "the same target")
    for label, comp in (("baseline", comp_a), ("candidate", comp_b)):
        if comp and runtime not in comp:
            raise UsageError(f"the {label}'s {role_a if label == 'baseline' else role_b} is compiled for "
                             f"{', '.join(sorted(comp))}, but the target runs {runtime}: gate runs compiled for "
                             "this target")


def _eval_images(a: Resolved, b: Resolved) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    """Raw held-out images and labels: the baseline's eval set (else the candidate's), sha256-checked."""
    from edgekd.preprocess import read_eval_sample, read_eval_set, sample_text

    for label, res in (("baseline", a), ("candidate", b)):
        if res.eval_set is not None:
            if not res.eval_set.is_file():
                raise UsageError(f"{label} eval set is missing: {res.eval_set}")
            verify_file(res.eval_set, res.eval_sha256, f"{label} {res.eval_set.name}")
            images, labels, _ = read_eval_set(res.eval_set)
            sample = sample_text(read_eval_sample(res.eval_set))  # a run's or bundle's eval set: a sample of test
            return images, labels, f"{label}: {res.eval_set}" + (f" ({sample})" if sample else "")
    return None, None, None


def _inputs(res: Resolved, images: np.ndarray | None, batch: int) -> np.ndarray:
    if images is not None:
        from edgekd.preprocess import NormalizedImages

        if res.preprocessing is None:
            raise UsageError(f"{res.path.name}: no preprocessing is known for it: pass --eval-set eval_set.npz")
        return NormalizedImages(images, res.preprocessing)  # normalised a batch at a time
    if res.input_shape is None:
        raise UsageError(f"{res.path.name}: its input shape is not static: pass --eval-set eval_set.npz")
    return np.random.default_rng(0).standard_normal((batch, *res.input_shape)).astype(np.float32)


def _top1(session: Any, x: np.ndarray, labels: np.ndarray) -> float:
    logits = np.concatenate([session.infer(x[i:i + 64]) for i in range(0, len(x), 64)])
    return float((logits.argmax(1) == labels).mean())


@dataclass
class Arm:
    """One side of the gate, loaded: what was resolved, the artifact picked, its precision and session."""

    res: Resolved
    cand: Candidate
    precision: str
    session: Any
    batch: np.ndarray  # the latency input (first `target.batch_size` images)
    top1: float | None


@dataclass
class Pair:
    """Baseline and candidate loaded for one target, with the eval set they were both scored on."""

    target: TargetProfile
    runtime: str
    a: Arm
    b: Arm
    eval_from: str | None
    eval_images: int | None
    host_mismatch: str | None = None  # set when --allow-host-mismatch judged a host that is not the device
    notes: list[str] = field(default_factory=list)
    # (top-1, how) the candidate's own run requires (candidate_requirement); None when it recorded none
    required: tuple[float, str] | None = None


def load_pair(baseline: Path, candidate: Path, target_name: str | None, role: str | None = None,
              eval_set: Path | None = None, allow_host_mismatch: bool = False) -> Pair:
    """Resolve, check compatibility, verify sha256, load both sessions, and top-1 each on the eval set."""
    from edgekd.runtimes import get_runtime

    a = _side("baseline", baseline, eval_set)
    b = _side("candidate", candidate, eval_set)
    if target_name is None:
        if a.run_target is None:
            raise UsageError("pass --target (the baseline does not name the target it was made for)")
        target_name = a.run_target
    target = load_target(target_name)
    from edgekd.devicebuild.record import use_compiled
    from edgekd.gate.host import gate_plan

    plan, mismatch = gate_plan(target, allow_host_mismatch)
    plan = plan or _runnable_here(target)
    (a, notes_a), (b, notes_b) = use_compiled(a, target, plan), use_compiled(b, target, plan)
    role_a, role_b = pick_role(a, role), pick_role(b, role)
    check_compatible(a, b, role_a, role_b, plan.runtime)
    ca: Candidate = candidate_for(a, role_a, plan.runtime, "baseline ")
    cb: Candidate = candidate_for(b, role_b, plan.runtime, "candidate ")
    prec_a = choose_precision(target, ca.precision, plan.runtime, True, f"baseline {ca.label}")
    prec_b = choose_precision(target, cb.precision, plan.runtime, True, f"candidate {cb.label}")
    verify(ca)
    verify(cb)
    images, labels, eval_from = _eval_images(a, b)
    xa, xb = _inputs(a, images, target.batch_size), _inputs(b, images, target.batch_size)
    rt = get_runtime(plan.runtime)
    sa = rt.load(ca.file, settings_for(target, prec_a))
    sb = rt.load(cb.file, settings_for(target, prec_b))
    batch_a, batch_b = np.ascontiguousarray(xa[:target.batch_size]), np.ascontiguousarray(xb[:target.batch_size])
    top_a = _top1(sa, xa, labels) if labels is not None else None
    top_b = _top1(sb, xb, labels) if labels is not None else None
    return Pair(target=target, runtime=plan.runtime, a=Arm(a, ca, prec_a, sa, batch_a, top_a),
                b=Arm(b, cb, prec_b, sb, batch_b, top_b), eval_from=eval_from,
                eval_images=None if images is None else int(len(images)), host_mismatch=mismatch,
                notes=[f"baseline: {n}" for n in notes_a] + [f"candidate: {n}" for n in notes_b],
                required=candidate_requirement(a, b, eval_from))


@dataclass
class Measured:
    """What `sample` measured: the interleaved decision (stats and samples), the candidate's size and memory."""

    decision: Decision
    measure_s: float
    size_mb: float
    memory_mb: float | None
    memory_method: str


def sample(pair: Pair, cfg: GateConfig) -> Measured:
    """Interleaved latency samples of both arms (rerun when too noisy), then the candidate's size and memory."""
    from edgekd.runtimes.memory import measure_memory, model_size_bytes

    a, b = pair.a, pair.b
    t_measure = time.perf_counter()
    decision = decide_with_rerun(
        lambda: interleaved_samples(lambda: a.session.infer(a.batch), lambda: b.session.infer(b.batch),
                                    **cfg.sampler_kwargs()),
        cfg)
    measure_s = time.perf_counter() - t_measure
    size_mb = model_size_bytes(b.cand.files) / 1e6
    memory = measure_memory(b.cand.file, pair.runtime, settings_for(pair.target, b.precision), b.batch,
                            expected_sha256=b.cand.sha256 or None)
    mem = memory["memory_bytes"]
    return Measured(decision, measure_s, size_mb, None if mem is None else mem / 1e6, memory["method"])


def decide(pair: Pair, measured: Measured, accuracy_tolerance: float = 0.5) -> tuple[GateResult, list[str]]:
    """The gate's verdict: the latency comparison plus the absolute checks the profile's budgets ask for
    (latency at its percentile, size, memory) and the accuracy check when both sides were scored; any failure
    fails, else an inconclusive comparison is inconclusive, else pass. Returns (result, notes)."""
    bud = pair.target.budgets
    checks: list[AbsoluteCheck] = []
    if bud.latency_ms is not None:
        checks.append(latency_budget_check(measured.decision.samples.calls_b_ms, bud.latency_ms,
                                           float(bud.latency_percentile[1:])))
    if bud.model_size_mb is not None:
        checks.append(size_check(measured.size_mb, bud.model_size_mb))
    if bud.peak_memory_mb is not None and measured.memory_mb is not None:
        checks.append(memory_check(measured.memory_mb, bud.peak_memory_mb))
    notes = []
    top_a, top_b = pair.a.top1, pair.b.top1
    if top_a is not None and top_b is not None:
        checks.append(accuracy_check(top_b * 100, top_a * 100, accuracy_tolerance))
    else:
        notes.append("no eval set on either side: accuracy not checked (pass --eval-set)")
    if pair.required is not None and top_b is not None:
        checks.append(requirement_check(top_b * 100, pair.required[0] * 100, pair.required[1]))
    if pair.a.precision != pair.b.precision:
        notes.append(f"baseline runs {pair.a.precision}, candidate {pair.b.precision}")
    return overall(measured.decision.stats, checks), notes


def candidate_requirement(a: Resolved, b: Resolved, eval_from: str | None) -> tuple[float, str] | None:
    """The top-1 the candidate's own run must reach (its recorded --max-drop / --accuracy-floor, as `compress`
    and `bench RUN` judge it), and how it was found; None for a candidate that recorded none (a lone file, an
    older run). The drop from the teacher applies only when the gate scores on the images the candidate's
    teacher top-1 was measured on (its own eval set, or the baseline's with the same sha256); else the floor."""
    if b.accuracy is None:
        return None
    own = eval_from is not None and (eval_from.startswith("candidate")
                                     or (b.eval_sha256 is not None and b.eval_sha256 == a.eval_sha256))
    teacher = b.teacher_top1 if own else None
    need = b.accuracy.required_or_none(teacher)
    if need is None:
        return None
    parts = [f"max drop {b.accuracy.max_drop_points:g} points from the teacher's {teacher:.2%}"
             if teacher is not None and b.accuracy.max_drop_points is not None else "",
             f"floor {b.accuracy.floor:.2%}" if b.accuracy.floor is not None else ""]
    return need, ", ".join(p for p in parts if p)


def _arm_context(arm: Arm) -> dict[str, Any]:
    c = arm.cand
    return {"path": str(arm.res.path), "kind": arm.res.kind, "role": c.role, "file": c.label,
            "sha256": c.sha256 or None, "precision": arm.precision, "top1": arm.top1,
            "runtime_facts": arm.session.describe()}


def run_gate(baseline: Path, candidate: Path, target_name: str | None, cfg: GateConfig, role: str | None = None,
             eval_set: Path | None = None, accuracy_tolerance: float = 0.5, allow_host_mismatch: bool = False,
             ) -> tuple[GateResult, dict[str, Any], Any]:
    """Load, sample interleaved, decide. Returns (result, context for the report, samples)."""
    from edgekd.gate.host import mark_host_mismatch

    t0 = time.perf_counter()
    pair = load_pair(baseline, candidate, target_name, role, eval_set, allow_host_mismatch)
    measured = sample(pair, cfg)
    result, notes = decide(pair, measured, accuracy_tolerance)
    notes = pair.notes + notes
    if pair.host_mismatch:  # said in every output: console, JSON, JUnit, Markdown
        result = mark_host_mismatch(result, pair.host_mismatch)
        notes.append(pair.host_mismatch)
    target = pair.target
    context = {
        "target": {"name": target.name, "runtime": target.runtime.name, "device": target.runtime.device,
                   "device_name": target.device.name, "budgets": target.budgets.model_dump(mode="json")},
        "baseline": _arm_context(pair.a), "candidate": _arm_context(pair.b),
        "config": cfg.model_dump(mode="json"), "accuracy_tolerance_points": accuracy_tolerance,
        "eval_set": pair.eval_from, "eval_images": pair.eval_images,
        "candidate_size_mb": measured.size_mb, "candidate_memory_mb": measured.memory_mb,
        "memory_method": measured.memory_method,
        "host_mismatch": pair.host_mismatch, "measure_s": measured.measure_s, "wall_s": time.perf_counter() - t0, "notes": notes,
    }
    return result, context, measured.decision.samples
