"""`edgekd gate --baseline A --candidate B --target T`: the CI latency regression gate.

Both compiled artifacts are loaded with the target's runtime and settings and re-measured in the same job,
interleaved (edgekd.gate.interleaved_samples, ABBA order, per-round medians), and compared with
edgekd.gate.decide_with_rerun. Absolute checks stay separate: the candidate's latency at the profile's
percentile against the budget, its size and memory against budgets, and the accuracy of its compiled
artifact against the baseline's on the same held-out images (two-sided tolerance).

The gate never judges on estimates: a target this machine cannot run exits 2 with the reason.
Exit codes: 0 pass, 1 fail, 3 inconclusive, 2 bad usage or input.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from edgekd.artifacts import Candidate, Resolved, pick_role, resolve, verify, verify_file
from edgekd.benchmark import choose_precision, plan_measurement, settings_for
from edgekd.cli.bench_cmd import candidate_for
from edgekd.cli.common import console, guarded, print_json, set_run_dir, stdout_to_stderr
from edgekd.errors import MissingExtra, UsageError
from edgekd.gate import (
    GateConfig, GateResult, accuracy_check, decide_with_rerun, interleaved_samples, latency_budget_check,
    markdown_summary, memory_check, overall, plot_distributions, size_check, write_junit,
)  # fmt: skip
from edgekd.manifest import write_json_atomic
from edgekd.targets import TargetProfile, load_target

Opt = typer.Option


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
    from edgekd.preprocess import read_eval_set

    for label, res in (("baseline", a), ("candidate", b)):
        if res.eval_set is not None:
            if not res.eval_set.is_file():
                raise UsageError(f"{label} eval set is missing: {res.eval_set}")
            verify_file(res.eval_set, res.eval_sha256, f"{label} {res.eval_set.name}")
            images, labels, _ = read_eval_set(res.eval_set)
            return images, labels, f"{label}: {res.eval_set}"
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


def run_gate(baseline: Path, candidate: Path, target_name: str | None, cfg: GateConfig, role: str | None = None,
             eval_set: Path | None = None, accuracy_tolerance: float = 0.5, allow_host_mismatch: bool = False,
             ) -> tuple[GateResult, dict[str, Any], Any]:
    """Resolve, check, load, measure interleaved, decide. Returns (result, context for the report, samples)."""
    from edgekd.runtimes import get_runtime
    from edgekd.runtimes.memory import measure_memory, model_size_bytes

    t0 = time.perf_counter()
    a = _side("baseline", baseline, eval_set)
    b = _side("candidate", candidate, eval_set)
    if target_name is None:
        if a.run_target is None:
            raise UsageError("pass --target (the baseline does not name the target it was made for)")
        target_name = a.run_target
    target = load_target(target_name)
    from edgekd.runtimes.identity_report import gate_plan, mark_host_mismatch

    plan, mismatch = gate_plan(target, allow_host_mismatch)
    plan = plan or _runnable_here(target)
    from edgekd.devicebuild.record import use_compiled

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
    t_measure = time.perf_counter()
    decision = decide_with_rerun(
        lambda: interleaved_samples(lambda: sa.infer(batch_a), lambda: sb.infer(batch_b), **cfg.sampler_kwargs()),
        cfg)
    measure_s = time.perf_counter() - t_measure
    samples = decision.samples
    bud = target.budgets
    checks = []
    if bud.latency_ms is not None:
        checks.append(latency_budget_check(samples.calls_b_ms, bud.latency_ms, float(bud.latency_percentile[1:])))
    size_mb = model_size_bytes(cb.files) / 1e6
    if bud.model_size_mb is not None:
        checks.append(size_check(size_mb, bud.model_size_mb))
    memory = measure_memory(cb.file, plan.runtime, settings_for(target, prec_b), batch_b,
                            expected_sha256=cb.sha256 or None)
    mem_mb = memory["memory_bytes"] / 1e6
    if bud.peak_memory_mb is not None and mem_mb is not None:
        checks.append(memory_check(mem_mb, bud.peak_memory_mb))
    notes = [f"baseline: {n}" for n in notes_a] + [f"candidate: {n}" for n in notes_b]
    if top_a is not None and top_b is not None:
        checks.append(accuracy_check(top_b * 100, top_a * 100, accuracy_tolerance))
    else:
        notes.append("no eval set on either side: accuracy not checked (pass --eval-set)")
    if prec_a != prec_b:
        notes.append(f"baseline runs {prec_a}, candidate {prec_b}")
    result = overall(decision.stats, checks)
    if mismatch:
        result = mark_host_mismatch(result, mismatch)
        notes.append(mismatch)
    side = lambda res, c, prec, s, top: {  # noqa: E731
        "path": str(res.path), "kind": res.kind, "role": c.role, "file": c.label, "sha256": c.sha256 or None,
        "precision": prec, "top1": top, "runtime_facts": s.describe()}
    context = {
        "target": {"name": target.name, "runtime": target.runtime.name, "device": target.runtime.device,
                   "device_name": target.device.name, "budgets": bud.model_dump(mode="json")},
        "baseline": side(a, ca, prec_a, sa, top_a), "candidate": side(b, cb, prec_b, sb, top_b),
        "config": cfg.model_dump(mode="json"), "accuracy_tolerance_points": accuracy_tolerance,
        "eval_set": eval_from, "eval_images": None if images is None else int(len(images)),
        "candidate_size_mb": size_mb, "candidate_memory_mb": mem_mb,
        "memory_method": memory["method"],
        "host_mismatch": mismatch, "measure_s": measure_s, "wall_s": time.perf_counter() - t0, "notes": notes,
    }
    return result, context, samples


def report_json(result: GateResult, context: dict[str, Any]) -> dict[str, Any]:
    return {**result.model_dump(mode="json"), "gate": context}


def write_outputs(result: GateResult, context: dict[str, Any], samples: Any, *, json_files: list[Path] = (),
                  junit: list[Path] = (), markdown: list[Path] = (), plot: list[Path] = (),
                  step_summary: bool = True) -> list[Path]:
    """Write each file asked for; with `step_summary`, append the Markdown to $GITHUB_STEP_SUMMARY if set."""
    import json

    written = []
    for file in json_files:
        file.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(file, json.dumps(report_json(result, context), indent=2, default=str) + "\n")
        written.append(file)
    written += [write_junit(result, file) for file in junit]
    md = markdown_summary(result)
    for file in markdown:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(md)
        written.append(file)
    if step_summary and os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as fh:
            fh.write(md + "\n")
    t = context["target"]
    for file in plot:
        written.append(plot_distributions(samples.calls_a_ms, samples.calls_b_ms, file,
                                          title=f"{t['name']} ({t['runtime']} {t['device']}): per-call latency"))
    return written


def print_gate(result: GateResult, context: dict[str, Any]) -> None:
    color = {"pass": "green", "fail": "red", "inconclusive": "yellow"}[result.verdict]
    table = Table(title=f"edgekd gate -> {context['target']['name']} ({context['target']['runtime']} "
                        f"{context['target']['device']})")
    for col in ("check", "status", "measured", "limit", "why"):
        table.add_column(col)
    s = result.stats
    table.add_row("latency regression", s.verdict, f"B/A {s.ratio:.3f} [{s.ci_low:.3f}, {s.ci_high:.3f}]",
                  f"<= {1 + s.threshold:.2f}", s.reason)
    for c in result.checks:
        table.add_row(c.name, c.status, f"{c.measured:.4g} {c.unit}", f"{c.limit:g}", c.reason)
    console.print(table)
    for note in context["notes"]:
        console.print(f"[yellow]note:[/] {escape(note)}", markup=True)
    console.print(f"[bold {color}]{result.verdict.upper()}[/] (exit {result.exit_code}): {escape(result.reason)} "
                  f"[dim]({context['wall_s']:.1f} s)[/]", markup=True)


_FLAGS = {"max_cv": "--max-spread", "reruns_when_noisy": "--reruns"}  # GateConfig fields named otherwise


@guarded
def gate(
    baseline: Annotated[Path, Opt("--baseline", help="Baseline: run directory, bundle folder or model file.")],
    candidate: Annotated[Path, Opt("--candidate", help="Candidate: run directory, bundle folder or model file.")],
    target: Annotated[Optional[str], Opt("--target", "-t", help="Target profile (default: the baseline's).")] = None,
    threshold: Annotated[float, Opt("--threshold", help="Fail when the candidate is this much slower.")] = 0.10,
    alpha: Annotated[float, Opt("--alpha", help="Significance level of the one-sided test.")] = 0.002,
    rounds: Annotated[int, Opt("--rounds", help="Interleaved rounds (>= 10).")] = 60,
    runs_per_round: Annotated[int, Opt("--runs-per-round", help="Calls per arm and round.")] = 40,
    max_spread: Annotated[float, Opt("--max-spread", help="Noise limit: robust spread of the per-round B/A "
                                     "ratios (per-arm CV with --independent) above which the verdict is "
                                     "inconclusive.")] = 0.15,
    reruns: Annotated[int, Opt("--reruns", help="Fresh measurements after a too-noisy one (0-5).")] = 1,
    independent: Annotated[bool, Opt("--independent", help="Compare the arms as independent samples (Mann-Whitney) "
                                     "instead of paired by round (Wilcoxon; cancels machine swings).")] = False,
    role: Annotated[Optional[str], Opt("--role", help="Artifact role (default student_int8).")] = None,
    eval_set: Annotated[Optional[Path], Opt("--eval-set", help="eval_set.npz for model files (accuracy).")] = None,
    accuracy_tolerance: Annotated[float, Opt("--accuracy-tolerance", help="Top-1 points, two-sided.")] = 0.5,
    as_json: Annotated[bool, Opt("--json", help="Print the JSON report to stdout.")] = False,
    junit: Annotated[Optional[Path], Opt("--junit", help="Write JUnit XML here.")] = None,
    markdown: Annotated[Optional[Path], Opt("--markdown", help="Write the Markdown summary here (default: append "
                                            "to $GITHUB_STEP_SUMMARY when set).")] = None,
    plot: Annotated[Optional[Path], Opt("--plot", help="Write a PNG of both latency distributions.")] = None,
    out: Annotated[Optional[Path], Opt("--out", help="Write gate.json, gate.xml, gate.md, gate.png here.")] = None,
    allow_host_mismatch: Annotated[bool, Opt("--allow-host-mismatch", help="Judge on this host although it is not "
                                             "the profile's device (`edgekd targets --check`); every output says "
                                             "so.")] = False,
) -> None:
    """Latency regression gate: re-measure baseline and candidate interleaved on the target and decide.

    Exit codes: 0 pass; 1 fail (slower beyond the threshold, or a budget / accuracy check fails);
    3 inconclusive (too noisy or too close to call); 2 bad usage or input, or a target this machine cannot run;
    4 internal error (its traceback goes to --out/logs/ when --out is given).
    """
    if out is not None:
        set_run_dir(out)
    try:
        cfg = GateConfig(threshold=threshold, alpha=alpha, rounds=rounds, runs_per_round=runs_per_round,
                         max_cv=max_spread, reruns_when_noisy=reruns, pairing="none" if independent else "round")
    except ValueError as exc:
        err = exc.errors()[0] if hasattr(exc, "errors") else {"loc": ["?"], "msg": str(exc)}
        field = str(err["loc"][0])
        flag = _FLAGS.get(field, "--" + field.replace("_", "-"))
        raise UsageError(f"{flag}: {err['msg']}") from None
    with stdout_to_stderr(as_json):  # --json: stdout holds the JSON document only
        result, context, samples = run_gate(baseline, candidate, target, cfg, role, eval_set, accuracy_tolerance,
                                             allow_host_mismatch)
        both = lambda explicit, name: [p for p in (explicit, out / name if out else None) if p]  # noqa: E731
        write_outputs(result, context, samples, json_files=both(None, "gate.json"), junit=both(junit, "gate.xml"),
                      markdown=both(markdown, "gate.md"), plot=both(plot, "gate.png"), step_summary=markdown is None)
    if as_json:
        print_json(report_json(result, context))
    else:
        print_gate(result, context)
    raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    app.command("gate")(gate)
