"""Where a stage was made, and whether a reused stage's training stack still matches this machine.

Compile and bench stages put the runtime versions and this host's identity into their stage id (their module's
`environment(config)`): a run directory copied to another machine, or kept across an OpenVINO upgrade, rebuilds
its compiled models and re-measures instead of reusing old ones. Training stages do not: retraining because torch
moved a patch release would waste hours, so they record the training stack in the manifest and a reuse under a
different stack prints one warning line (the stage is kept; delete its folder to rerun it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

TRAINING_STACK = ("torch", "torchvision", "nncf", "torchao", "onnx", "numpy")


def made_on() -> dict[str, Any]:
    """This machine and the runtimes installed on it, for the manifest (`edgekd inspect` shows it)."""
    import platform

    from edgekd.devicebuild.environment import host_identity, runtime_version

    return {"host": platform.node(), **host_identity(),
            "runtimes": {r: runtime_version(r) for r in ("openvino", "onnxruntime", "tensorrt")}}


def stack_differences(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    return [f"{k} {recorded[k]} (now {current.get(k, 'not installed')})" for k in TRAINING_STACK
            if k in recorded and recorded[k] != current.get(k)]


def warn_if_stack_changed(stage_dir: Path) -> None:
    from edgekd.manifest import library_versions, load_manifest

    manifest = load_manifest(stage_dir)
    diff = stack_differences(manifest.versions, library_versions())
    if diff:
        sys.stderr.write(f"warning: {stage_dir.name} was made with {', '.join(diff)}: reused as it is (delete the "
                         "folder to rerun it with this stack)\n")


def provenance(run: Any) -> list[dict[str, Any]]:
    """Per stage of an opened run (edgekd.bundle.run_info): where and with what it was made."""
    rows = []
    for stage, d in run.dirs.items():
        m = run.manifest(stage)
        made = m.made_on or {}
        runtimes = {k: v for k, v in (made.get("runtimes") or {}).items() if v}
        stack = {k: m.versions[k] for k in TRAINING_STACK if k in m.versions}
        rows.append({"stage": stage, "folder": d.name, "finished_at": m.finished_at,
                     "host": made.get("host"), "cpu": made.get("cpu_model"), "gpu": made.get("gpu_name"),
                     "runtimes": runtimes, "stack": stack,
                     "recorded": bool(made) or "not recorded (made before edgekd recorded it)"})
    return rows


def print_provenance(rows: list[dict[str, Any]], console: Any) -> None:
    from rich.table import Table

    table = Table(title="where each stage was made")
    for col in ("stage", "finished", "host", "CPU / GPU", "runtimes", "training stack"):
        table.add_column(col)
    for r in rows:
        stack = ", ".join(f"{k} {v}" for k, v in r["stack"].items()) or "-"
        if r["recorded"] is not True:
            table.add_row(r["folder"], r["finished_at"], "-", r["recorded"], "-", stack)
            continue
        hw = r["cpu"] or "?" if not r["gpu"] else f"{r['cpu']} / {r['gpu']}"
        table.add_row(r["folder"], r["finished_at"], r["host"] or "?", hw,
                      ", ".join(f"{k} {v}" for k, v in r["runtimes"].items()), stack)
    console.print(table)
