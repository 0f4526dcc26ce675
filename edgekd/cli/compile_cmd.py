"""`edgekd compile PATH --target T`: build the target runtime's artifacts on the device (edgekd.devicebuild)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from edgekd.cli.common import console, err_console, guarded, print_json, stdout_to_stderr

Opt = typer.Option


@guarded
def compile_(
    path: Annotated[Path, typer.Argument(help="A bundle folder (bundle.json), a run directory, or an .onnx file.")],
    target: Annotated[str, Opt("--target", "-t", help="Target profile name or YAML path.")],
    force: Annotated[bool, Opt("--force", help="Rebuild even when compiled/<target>/ matches this machine.")] = False,
    as_json: Annotated[bool, Opt("--json", help="Print the compile record as JSON.")] = False,
) -> None:
    """Build TensorRT engines / OpenVINO device blobs / ONNX Runtime-optimised models for TARGET on this machine.

    Writes PATH/compiled/TARGET/ with compiled.json (environment fingerprint, sha256 of every file); `edgekd bench`
    and `edgekd gate` on PATH then use it. Reused when this machine's fingerprint and the files match.
    Exit codes: 0 built or reused; 2 bad input or the runtime's extra is missing; 4 internal error.
    """
    from edgekd.devicebuild.build import compile_for_target

    with stdout_to_stderr(as_json):
        report = compile_for_target(path, target, force)
    if as_json:
        print_json(report)
        return
    table = Table(title=f"edgekd compile -> {report['target']} ({report['runtime']} {report['device']}): "
                        + ("reused (fingerprint and files match)" if report["reused"] else "built"))
    for col in ("role", "precision", "file", "sha256", "from"):
        table.add_column(col)
    for art in report["artifacts"]:
        f = art["files"][0]
        table.add_row(art["role"], art["precision"], f["path"], f["sha256"][:12], escape(art["source"]))
    console.print(table)
    env = ", ".join(f"{k} {v}" for k, v in report["environment"].items() if v is not None and "sha256" not in k)
    console.print(f"environment: {escape(env)}")
    for note in report["notes"]:
        err_console.print(f"[yellow]note:[/] {escape(note)}", markup=True)
    console.print(f"record: {escape(report['record'])}; measure it with `{escape(report['bench'])}`")


def register(app: typer.Typer) -> None:
    app.command("compile")(compile_)
