"""The gate's policy for where it measures: on the target's device, or (only when asked) on a host that is not.

The gate never judges a device it is not on (DECISIONS: "gate never judges on estimates"); with
--allow-host-mismatch it measures this host instead and every output says so.
"""

from __future__ import annotations

from edgekd.benchmark import MeasurePlan
from edgekd.errors import UsageError
from edgekd.runtimes.host import host_can_run
from edgekd.runtimes.identity import check_target, host_facts


def gate_plan(target, allow_host_mismatch: bool):
    """Where the gate measures `target`: on the target, or (only with --allow-host-mismatch) on this host when it
    runs the target's runtime and device but is not the profile's device. Returns (plan, mismatch reason or None);
    anything else is the caller's refusal (edgekd.benchmark.plan_measurement with allow_substitute=False)."""
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
