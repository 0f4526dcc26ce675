"""`edgekd targets --check`: for each profile, whether this machine is its device, and why not.

The facts only (`check_rows`); the CLI prints them (edgekd.cli.targets_cmd) and the gate's policy for a host
that is not the device lives with the gate (edgekd.gate.host)."""

from __future__ import annotations

from typing import Any

from edgekd.runtimes.host import host_can_run
from edgekd.runtimes.identity import check_target


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
