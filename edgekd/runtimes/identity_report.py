"""`edgekd targets --check`: for each profile, whether this machine is its device, and why not."""

from __future__ import annotations

from typing import Any

from edgekd.runtimes.host import host_can_run
from edgekd.runtimes.identity import check_target, host_facts


def check_rows(profiles: list) -> list[dict[str, Any]]:
    rows = []
    for p in profiles:
        ident = check_target(p)
        runtime = host_can_run(p.runtime.name, p.runtime.device, p.device.arch) if ident.matches else None
        if not ident.matches:
            verdict = "no: measured as host (device latency estimated)"
        elif runtime:
            verdict = "yes: measured on target"
        else:
            verdict = f"device matches, but {p.runtime.name} ({p.runtime.device}) is not usable here"
        rows.append({"name": p.name, "device": p.device.name, "identity_matches": ident.matches,
                     "runtime_usable": runtime, "measured_on_target": bool(ident.matches and runtime),
                     "verdict": verdict, "why": ident.why, "checked": list(ident.checked)})
    return rows


def print_check(profiles: list, as_json: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    from edgekd.cli.common import console, print_json

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


def gate_plan(target, allow_host_mismatch: bool):
    """Where the gate measures `target`: on the target, or (only with --allow-host-mismatch) on this host when it
    runs the target's runtime and device but is not the profile's device. Returns (plan, mismatch reason or None);
    anything else is the caller's refusal (edgekd.benchmark.plan_measurement with allow_substitute=False)."""
    from edgekd.benchmark import MeasurePlan, plan_measurement
    from edgekd.errors import UsageError

    r = target.runtime
    ident = check_target(target)
    if not ident.matches and host_can_run(r.name, r.device, host_facts().arch if target.device.arch == "any"
                                          else target.device.arch):
        if not allow_host_mismatch:
            raise UsageError(f"the gate never judges a device it is not on: this machine is not {target.name}'s "
                             f"device ({ident.why}); run it on that device, or pass --allow-host-mismatch to judge "
                             "this host instead (every output then says so)")
        reason = f"HOST MISMATCH (--allow-host-mismatch): measured on this host, not on {target.device.name} ({ident.why})"
        return MeasurePlan(runtime=r.name, device=r.device, on_target=False, reason=reason), reason
    return None, None


def mark_host_mismatch(result, reason: str):
    """The gate's result with the host-mismatch statement in its reasons, so JSON, JUnit, Markdown and the console
    all say it."""
    stats = result.stats.model_copy(update={"reason": f"{reason}. {result.stats.reason}"})
    return result.model_copy(update={"stats": stats, "reason": f"{reason}. {result.reason}"})
