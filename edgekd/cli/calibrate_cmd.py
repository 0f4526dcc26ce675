"""`edgekd calibrate --target T`: fit the profile's estimate fields on its device (edgekd.calibrate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from edgekd.cli.common import console, guarded, print_json, stdout_to_stderr

Opt = typer.Option


@guarded
def calibrate(
    target: Annotated[str, Opt("--target", "-t", help="Target profile; this machine must be its device.")],
    out: Annotated[Optional[Path], Opt("--out", help="Overlay file to write (default: calibration/<target>.yaml "
                                       "beside the profile, or $EDGEKD_CALIBRATION_DIR).")] = None,
    seconds: Annotated[float, Opt("--seconds", min=0.05, help="Minimum timed seconds per model and round.")] = 1.0,
    rounds: Annotated[int, Opt("--rounds", min=1, help="Interleaved rounds; each model's p50 is their median.")] = 3,
    as_json: Annotated[bool, Opt("--json", help="Print the report as JSON.")] = False,
    allow_host_mismatch: Annotated[bool, Opt("--allow-host-mismatch", help="Fit on this host although it is not the "
                                             "profile's device; the overlay's sources and every output say so.")] = False,
) -> None:
    """Measure a fixed set of models on this device, fit the roofline's compute/memory efficiencies and per-layer
    overhead, and write a profile overlay; every estimate then states this fit and its leave-one-model-out error.

    Needs torch (the `train` extra, to build the set) and the target's runtime. Exit 2 when this machine is not
    the profile's device (`edgekd targets --check`), unless --allow-host-mismatch.
    """
    from edgekd.calibrate.measure import calibrate as run

    with stdout_to_stderr(as_json):
        report = run(target, out, seconds, progress=None if as_json else console.print, rounds=rounds,
                     allow_host_mismatch=allow_host_mismatch)
    if as_json:
        print_json(report)
        return
    mismatch = report.get("host_mismatch")
    table = Table(title=f"edgekd calibrate -> {target} ({report['runtime']})" + (": HOST MISMATCH" if mismatch else ""))
    for col in ("model", "precision", "measured p50", "prior estimate", "fitted", "left-out estimate", "left-out error"):
        table.add_column(col)
    for r in report["points"]:
        table.add_row(r["model"], r["precision"], f"{r['measured_ms']:.4f} ms", f"{r['prior_estimate_ms']:.4f} ms",
                      f"{r['fitted_estimate_ms']:.4f} ms", f"{r['loo_estimate_ms']:.4f} ms", f"{r['loo_error_pct']:+.1f}%")
    console.print(table)
    console.print("fitted: " + ", ".join(f"{k} {v:.4g}" for k, v in report["fitted"].items()))
    console.print(f"leave-one-model-out error: mean {report['mean_abs_error_pct']}%, max {report['max_abs_error_pct']}% "
                  f"(prior fields: mean {report['prior_mean_abs_error_pct']}%); overlay: {report['overlay']}")
    if mismatch:
        console.print(f"[bold yellow]{escape(mismatch)}[/]: the fitted fields describe this host", markup=True)


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate)
