"""`edgekd bench` without the CLI: resolve an artifact, measure it on its target (or a host substitute, with
a roofline estimate for the device), judge it against the budgets, and return the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.artifacts import Resolved, candidate_for, pick_role, resolve, verify
from edgekd.benchmark.budgets import chance_checks, judge, layers_not_in_precision, required_top1
from edgekd.benchmark.measurement import TimingConfig, estimate, eval_inputs, measure, settings_for, spread
from edgekd.benchmark.placement import choose_precision, measured_on, plan_measurement
from edgekd.errors import UsageError
from edgekd.report.summary import exit_code_for, overall_verdict
from edgekd.runtimes.timing import METHODOLOGY
from edgekd.targets import TargetProfile, load_target


def target_for(res: Resolved, name: str | None) -> TargetProfile:
    """--target, or the run's / bundle's own target; a single file needs --target."""
    if name is None:
        if res.run_target is None:
            raise UsageError(f"pass --target for {res.path.name} (`edgekd targets` lists them)")
        name = res.run_target
    return load_target(name)


def run_bench(artifact: Path | Resolved, target_name: str | None = None, role: str | None = None, repeat: int = 1,
              eval_set: Path | None = None, timing: TimingConfig = TimingConfig(), strict: bool = False,
              ) -> dict[str, Any]:
    """Measure one artifact `repeat` times on the target (or a host substitute) and judge it; the report.
    `artifact` is a path (run directory, bundle, model file) or what edgekd.artifacts.resolve made of one."""
    if repeat < 1:
        raise UsageError("--repeat must be >= 1")
    res = artifact if isinstance(artifact, Resolved) else resolve(artifact, eval_set)
    target = target_for(res, target_name)
    role = pick_role(res, role)
    plan = plan_measurement(target)
    from edgekd.devicebuild.record import use_compiled

    res, compiled_notes = use_compiled(res, target, plan)  # what `edgekd compile` built here, when it did
    cand = candidate_for(res, role, plan.runtime)
    precision = choose_precision(target, cand.precision, plan.runtime, plan.on_target, cand.label)
    verify(cand)
    takes = cand.input_shape or res.input_shape  # a teacher may take larger images than the student's eval set
    x, labels, classes = eval_inputs(res.eval_set, takes, target.batch_size, res.eval_sha256,
                                     label=f"{res.path.name} eval set")
    if takes and tuple(x.shape[1:]) != takes:
        raise UsageError(f"eval set images are {list(x.shape[1:])} but {cand.label} takes {list(takes)}"
                         + (": the eval set is the student's size; measure a student role" if cand.input_shape else ""))
    settings = settings_for(target, precision, device=None if plan.on_target else plan.device)
    runs = [measure(cand.file, plan.runtime, settings, x, labels, target.batch_size, timing,
                    expected_sha256=cand.sha256 or None) for _ in range(repeat)]
    p50s = [r["latency"]["median_ms"] for r in runs]
    m = runs[int(sorted(range(repeat), key=lambda i: p50s[i])[(repeat - 1) // 2])]  # the median repeat
    row: dict[str, Any] = {
        "role": role, "file": cand.label, "path": str(cand.file), "sha256": cand.sha256 or None,
        "origin": cand.origin, "precision": precision, "runtime": plan.runtime, "device": settings.device,
        "measured_on": measured_on(plan.on_target, plan.runtime, settings.device, target), **m,
        "layers_not_in_precision": layers_not_in_precision(m["runtime_facts"]),
        # the size budget as compress judges it (stages.bench.deployed_size): the target runtime's own file has
        # the same size here as on the device, unless it was optimised for this CPU
        "size_measured": plan.on_target or (cand.compiled_for == target.runtime.name and not cand.hardware_specific),
        "size_file": cand.label,
    }
    sample = eval_set_facts(res.eval_set, labels)
    if sample is not None:
        row["top1_on"] = sample["text"]
    notes = [n for n in [plan.reason] + compiled_notes + [r["cv_warning"] for r in runs] if n]
    if plan.runtime != target.runtime.name:  # e.g. ExecuTorch without the mobile extra: say so, name the extra
        from edgekd.export.mobile import not_measured_note

        notes += [n for n in [not_measured_note(target.runtime.name, target.runtime.device)] if n]
    if sample is not None and sample["of"] is not None and sample["images"] < sample["of"]:
        notes.append(f"top-1 is on {sample['text']}; the run's own verdict is on the whole test split")
    if cand.origin == "export":
        notes.append(f"{res.path.name} has no {role} compiled for {plan.runtime}: measured the exported {cand.label}")
    if labels is None:
        notes.append("no eval set: latency on seeded random inputs, accuracy not measured (pass --eval-set)")
    if not plan.on_target:
        onnx = cand.onnx or res.onnx_for(role)
        if onnx is not None:
            est_prec = "int8" if precision == "int8" else ("fp16" if target.device.peak_fp16_tflops else "fp32")
            row["estimate"] = estimate(onnx, target, est_prec, target.batch_size)
            row["estimated_latency_ms"] = row["estimate"]["latency_ms"]
        else:
            notes.append(f"no ONNX file of {role} to estimate {target.device.name} latency from")
    required = required_top1(target, res.teacher_top1, res.accuracy) if labels is not None else None
    budgets = judge(target, row, required, plan.on_target, len(labels) if labels is not None else None)
    if required is not None and classes:  # an accuracy requirement is never met by a chance-level model
        learned = chance_checks(res.teacher_top1, row["top1"], len(classes), len(labels))
        budgets += learned
        notes += [c["message"] for c in learned]
    if sample is not None and sample["of"] is not None and sample["images"] < sample["of"]:
        for b in budgets:  # the accuracy budget is judged on the eval set's sample, and says so
            if b["name"].startswith("accuracy"):
                b["basis"] += f" on {sample['images']:,} of {sample['of']:,} test images (eval-set sample)"
    code = exit_code_for(budgets, strict)
    return {
        "artifact": str(res.path), "kind": res.kind, "role": role,
        "target": {"name": target.name, "runtime": target.runtime.name, "device": target.runtime.device,
                   "device_name": target.device.name, "precision": target.precision,
                   "budgets": target.budgets.model_dump(mode="json")},
        "measured_on_target": plan.on_target, "measured_with": f"{plan.runtime} {settings.device}",
        "row": row, "classes": classes, "eval_set": str(res.eval_set) if res.eval_set else None,
        "eval_set_sample": sample,
        "repeats": {"n": repeat, "p50_ms": p50s, "spread": spread(p50s)},
        "accuracy_requirement": {**(res.accuracy or target.accuracy).model_dump(mode="json"),
                                 "from": "the run" if res.accuracy else f"profile {target.name}"},
        "budgets": budgets, "verdict": overall_verdict(budgets) if budgets else "no budgets judged",
        "exit_code": code, "strict": strict, "notes": notes,
        "methodology": METHODOLOGY + f" Batch {target.batch_size}; --repeat {repeat}: each repeat loads the "
                       "artifact afresh and measures again; the row is the repeat with the median p50.",
    }


def eval_set_facts(eval_set: Path | None, labels) -> dict[str, Any] | None:
    """Which images an accuracy is on: eval_set.npz's recorded sample (edgekd.preprocess.eval_sample) with a
    `text` for people, or, for an eval set that records none, its image count; None without labels."""
    from edgekd.preprocess import read_eval_sample, sample_text

    if eval_set is None or labels is None:
        return None
    sample = read_eval_sample(eval_set)
    if sample is None:
        return {"images": len(labels), "of": None, "text": f"the {len(labels):,} images of {eval_set.name} (its "
                "sample is not recorded)"}
    return {**sample, "text": sample_text(sample)}
