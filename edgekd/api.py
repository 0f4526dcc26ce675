"""The Python API: the same path as the CLI, which only parses arguments, calls these and prints.

    import edgekd
    report = edgekd.compress(teacher=my_model, data="photos/", target="intel-cpu", student="auto",
                             mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    print(report.verdict, report.model("student_int8").top1)

Every keyword of `compress` is a field of `edgekd.plan.CompressOptions` (the same names as the CLI flags and
the YAML keys). `teacher` and `student` also take an `nn.Module` object, a `.pt2`/`.onnx` path or an import
path (edgekd.models.sources). Results are typed (edgekd.results, edgekd.gate.GateResult,
edgekd.bundle.schema.Bundle); errors are `edgekd.errors.EdgekdError` exceptions with the CLI's one-line
messages and its exit code as `.exit_code`. Nothing here exits the process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.results import BenchReport, EvalReport, Report


def _model_spec(value: Any, role: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    from torch import nn

    if isinstance(value, nn.Module):
        from edgekd.models.sources import register_module

        return register_module(value)
    raise TypeError(f"{role} must be a model name, a path, an import path or an nn.Module, not "
                    f"{type(value).__name__}")


def compress(teacher: Any = None, data: str | Path = "digits", target: str | Path = "intel-cpu", *,
             student: Any = "auto", run_dir: str | Path | None = None, strict: bool = False, bundle: bool = True,
             wait: bool = False, quiet: bool = True, **options: Any) -> Report | None:
    """Run the whole chain (teacher -> ... -> bench) and return its report; finished stages are reused.

    An in-memory `teacher`/`student` module is identified by its class's qualified name and a hash of its
    state_dict (stated in the teacher manifest), so calling again with the same weights reuses the stages.
    """
    from edgekd.runner import run_report
    from edgekd.plan import validate_options

    values = dict(options, target=str(target), data=str(data), student=_model_spec(student, "student") or "auto")
    if teacher is not None:
        values["teacher"] = _model_spec(teacher, "teacher")
    opts = validate_options(values)
    report = run_report(opts, Path(run_dir) if run_dir is not None else None, strict=strict, quiet=quiet,
                        bundle=bundle, wait=wait)
    return None if report is None else Report.model_validate(report)  # None: another rank under torchrun


def bench(artifact: str | Path, target: str | None = None, *, role: str | None = None, repeat: int = 1,
          eval_set: str | Path | None = None, min_s: float = 1.0, strict: bool = False) -> BenchReport:
    """Measure a run directory, a bundle or a model file on a target (as `edgekd bench`)."""
    from edgekd.artifacts import resolve
    from edgekd.benchmark import TimingConfig, run_bench

    res = resolve(Path(artifact), eval_set)
    report = run_bench(res, target, role, repeat, Path(eval_set) if eval_set else None, TimingConfig(min_s=min_s),
                       strict)
    return BenchReport.model_validate(report)


def gate(baseline: str | Path, candidate: str | Path, target: str | None = None, *, role: str | None = None,
         eval_set: str | Path | None = None, accuracy_tolerance: float = 0.5, allow_host_mismatch: bool = False,
         **config: Any):
    """The latency regression gate (as `edgekd gate`); `config` holds edgekd.gate.GateConfig fields.
    Returns edgekd.gate.GateResult (verdict, exit_code, reason, stats, checks)."""
    from edgekd.gate import GateConfig, run_gate

    result, _context, _samples = run_gate(Path(baseline), Path(candidate), target, GateConfig(**config), role,
                                          Path(eval_set) if eval_set else None, accuracy_tolerance,
                                          allow_host_mismatch)
    return result


def export_bundle(run: str | Path, out: str | Path, *, formats: list[str] | None = None, force: bool = False,
                  tflite_io: str = "int8"):
    """Write and verify an artifact bundle of a finished run (as `edgekd export-bundle`); returns its
    edgekd.bundle.schema.Bundle (`.verification["passed"]`)."""
    from edgekd.bundle.build import write_bundle
    from edgekd.bundle.verify import load_bundle

    folder = write_bundle(Path(run), Path(out), formats, force=force, tflite_io=tflite_io)
    return load_bundle(folder)


def eval(bundle: str | Path, images: str | Path, *, strict: bool = False, batch: int = 64,  # noqa: A001
         pte: bool = False) -> EvalReport:
    """Top-1 of every runnable artifact of a bundle on a folder of raw image files (as `edgekd eval`)."""
    from edgekd.cli.eval_cmd import run_eval

    return EvalReport.model_validate(run_eval(Path(bundle), Path(images), strict=strict, batch=batch, pte=pte))
