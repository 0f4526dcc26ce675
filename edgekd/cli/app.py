"""The `edgekd` command."""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from edgekd import __version__


class OneLineUsageErrors(TyperGroup):
    """A usage error typer finds itself (a mistyped option, a value of the wrong type, a missing argument) is
    one line on stderr and exit 2, like every other bad input, instead of a boxed panel of five lines."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except Exception as exc:
            if type(exc).__name__ == "Abort":
                sys.stderr.write("aborted\n")
                sys.exit(1)
            if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
                raise
            if type(exc).__name__ == "NoArgsIsHelpError":  # `edgekd` alone: the help, as asked for
                exc.show()
                sys.exit(exc.exit_code)
            ctx = getattr(exc, "ctx", None)
            where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            message = " ".join(str(exc.format_message()).split())
            sys.stderr.write(f"error: {message}{where}\n")
            sys.exit(exc.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    name="edgekd", cls=OneLineUsageErrors, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Teacher -> transfer -> distill -> INT8 QAD -> ONNX -> TensorRT/OpenVINO/ORT -> verified benchmark. "
         "Exit codes: 0 every measured budget holds; 1 a measured budget or accuracy floor fails; "
         "2 bad usage or input; 3 inconclusive (gate); 4 internal error (the one-line message names the log "
         "file holding the traceback, in the run directory when there is one).",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgekd {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """edgekd: compress a vision model for an edge device, verify it, and gate regressions in CI."""


def _register() -> None:
    import importlib

    for name in ("compress", "targets_cmd", "models_cmd", "bench_cmd", "gate_cmd", "inspect_cmd", "bundle_cmd",
                 "eval_cmd", "compile_cmd", "calibrate_cmd"):
        try:
            module = importlib.import_module(f"edgekd.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"edgekd.cli.{name}":
                raise
            continue
        module.register(app)


def _quiet_library_noise() -> None:
    """Exporter and torch warnings about their own internals say nothing a user can act on."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch.*")
    for name in ("torch.utils._pytree", "torch.utils.cpp_extension"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("nncf").setLevel(logging.WARNING)


def main() -> None:
    from edgekd.cli.common import set_run_dir

    set_run_dir(None)  # a crash before any command logs to the user's cache, not a run an earlier call named
    _quiet_library_noise()
    try:
        _register()
        app()
    except Exception as exc:  # noqa: BLE001 - outside any command (registration): still exit 4, not a traceback
        from edgekd.cli.common import internal_error

        raise SystemExit(internal_error(exc).exit_code) from None
