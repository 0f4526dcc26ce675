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


def print_check(profiles: list, as_json: bool) -> None:
    """`targets --check`: the identity rows (edgekd.runtimes.identity_report.check_rows) as JSON or a table."""
    from rich.markup import escape

    from edgekd.runtimes.identity import host_facts
    from edgekd.runtimes.identity_report import check_rows

    rows = check_rows(profiles)
    facts = host_facts()
    if as_json:
        print_json({"host": {"arch": facts.arch, "cpu_vendor": facts.cpu_vendor, "cpu_model": facts.cpu_model,
                             "cpu_flags": sorted(facts.cpu_flags), "board": facts.board, "os": facts.os,
                             "gpu_name": facts.gpu_name, "compute_capability": facts.compute_capability},
                    "profiles": rows})
        return
    table = Table(title=f"edgekd targets --check on this machine: {escape(facts.summary())}")
    for col in ("name", "this machine is the device?", "why"):
        table.add_column(col)
    for r in rows:
        style = "green" if r["measured_on_target"] else ("yellow" if r["identity_matches"] else None)
        table.add_row(r["name"], r["verdict"], escape(r["why"]), style=style)
    console.print(table)
