"""`edgekd compress`: the whole chain, resumable, with a verdict and an exit code."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edgekd.cli.common import console, guarded, print_json
from edgekd.cli.options import given, option_parameters
from edgekd.errors import UsageError
from edgekd.plan import CompressOptions, load_pipeline_file, validate_options

Opt = typer.Option


def _run_control(
    config: Annotated[Optional[Path], Opt("--config", help="YAML pipeline file with the same options (flags override it).")] = None,
    epochs: Annotated[Optional[int], Opt(help="Shorthand: sets the distill epochs and scales teacher/finetune/qad epochs with it.")] = None,
    run_dir: Annotated[Optional[Path], Opt(help="Run directory. Default: runs/<data>-<target>.")] = None,
    wait: Annotated[bool, Opt("--wait", help="When another process is writing the run directory, wait for it instead of exiting 2.")] = False,
    strict: Annotated[bool, Opt(help="Exit 1 also when a budget judged only on an estimate fails.")] = False,
    bundle: Annotated[bool, Opt("--bundle/--no-bundle", help="Write a verified artifact bundle into RUN_DIR/bundle (and bundle.tar.gz) at the end.")] = True,
    as_json: Annotated[bool, Opt("--json", help="Print report.json to stdout instead of tables.")] = False,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """The flags of `compress` that steer the run rather than set an option of it (no YAML key)."""


RUN_CONTROL = inspect.signature(_run_control, eval_str=True).parameters


@guarded
def compress(**values: Any) -> None:
    """Run teacher -> finetune -> distill -> qad -> export -> compile -> bench and judge the target's budgets.

    Finished stages are reused: the same command again skips them; changing one option reruns that stage
    and the ones after it. Every option is also a key of a --config YAML file (flags override it).
    """
    control = {name: values.get(name, p.default) for name, p in RUN_CONTROL.items()}
    config, epochs = control["config"], control["epochs"]
    options: dict[str, Any] = load_pipeline_file(config) if config else {}
    if epochs is not None:
        if epochs < 1:
            raise UsageError(f"--epochs {epochs}: at least 1 epoch is needed (0 would ship an untrained model)")
        options.update(distill_epochs=epochs, teacher_epochs=max(1, epochs * 2 // 3),
                       finetune_epochs=max(1, epochs // 3), qad_epochs=max(1, epochs // 6))
    options.update(given(values, CompressOptions))
    opts = validate_options(options)
    code = run_compress(opts, control["run_dir"], strict=control["strict"], as_json=control["as_json"],
                        quiet=control["quiet"], bundle=control["bundle"], wait=control["wait"])
    raise typer.Exit(code)


# typer reads the flags from this signature: one per CompressOptions field (edgekd.cli.options), then run control
compress.__signature__ = inspect.Signature([*option_parameters(CompressOptions),
                                            *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                                              for p in RUN_CONTROL.values())])


def run_compress(opts: CompressOptions, run_dir: Path | None, *, strict: bool = False, as_json: bool = False,
                 quiet: bool = False, bundle: bool = False, wait: bool = False) -> int:
    """Run the chain and print the report (tables, or with ``as_json`` one JSON document alone on stdout:
    library output during the run goes to stderr); returns the exit code."""
    from edgekd.runner import run_report

    report = run_report(opts, run_dir, strict=strict, as_json=as_json, quiet=quiet, bundle=bundle, wait=wait)
    if report is None:  # not the main process of a distributed run
        return 0
    if as_json:
        print_json(report)
    else:
        from edgekd.report.summary import print_report

        print_report(report, console)
    return int(report["exit_code"])


def register(app: typer.Typer) -> None:
    app.command("compress")(compress)
