"""The `edgekd` command."""

from __future__ import annotations

import typer

from edgekd import __version__

app = typer.Typer(
    name="edgekd", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Teacher -> transfer -> distill -> INT8 QAD -> ONNX -> TensorRT/OpenVINO/ORT -> verified benchmark. "
         "Exit codes: 0 every measured budget holds; 1 a measured budget or accuracy floor fails; "
         "2 bad usage or input; 3 inconclusive (gate).",
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
                 "eval_cmd"):
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
    _quiet_library_noise()
    _register()
    app()
