"""`edgekd targets`: list the device profiles, or show one."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from edgekd.cli.common import console, guarded, print_json
from edgekd.targets import available_targets, load_target


@guarded
def targets(
    name: Annotated[Optional[str], typer.Argument(help="Show this profile in full (name or YAML path).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Say for each profile whether this machine is its device "
                                        "(identity: CPU model and ISA flags, board, GPU, OpenVINO device) and "
                                        "why not.")] = False,
) -> None:
    """List the target profiles in targets/ (runtime, device, precision, budgets), or show one."""
    if check:
        from edgekd.runtimes.identity_report import print_check

        print_check([load_target(name)] if name else [load_target(n) for n in available_targets()], as_json)
        return
    if name:
        prof = load_target(name)
        if as_json:
            print_json(prof.model_dump(mode="json"))
            return
        console.print_json(prof.model_dump_json())
        return
    profiles = [load_target(n) for n in available_targets()]
    if as_json:
        print_json([p.model_dump(mode="json") for p in profiles])
        return
    table = Table(title="edgekd targets")
    for col in ("name", "runtime", "device", "precision", "latency budget", "size budget", "measurable here"):
        table.add_column(col)
    for p in profiles:
        b = p.budgets
        lat = f"{b.latency_percentile} <= {b.latency_ms} ms" if b.latency_ms else "-"
        size = f"<= {b.model_size_mb} MB" if b.model_size_mb else "-"
        table.add_row(p.name, f"{p.runtime.name} ({p.runtime.device})", p.device.name, p.precision, lat, size,
                      "yes" if p.host_measurable else "no (estimated)")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("targets")(targets)
