"""`edgekd inspect BUNDLE|RUN`: print what it is and check that no file changed since it was written."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from edgekd.cli.common import console, guarded, print_json
from edgekd.errors import UsageError


def inspect_bundle(folder: Path, run_reference: bool = False) -> dict[str, Any]:
    """Check a bundle folder; UsageError (one line naming the file) on the first problem."""
    from edgekd.bundle.verify import check_files, check_reference, load_bundle

    bundle = load_bundle(folder)
    problems = check_files(folder, bundle)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UsageError(problems[0] + more)
    out: dict[str, Any] = {"kind": "bundle", "path": str(folder), "files_checked": 1 + sum(
        len(a.files) for a in bundle.artifacts) + 2 + len(bundle.extra_files), "sha256": "ok",
        "bundle": bundle.model_dump(mode="json")}
    if run_reference:
        out["reference"] = check_reference(folder, bundle)
    return out


def inspect_run(run_dir: Path) -> dict[str, Any]:
    from edgekd.bundle.run_info import open_run
    from edgekd.manifest import verify_artifacts

    run = open_run(run_dir)
    problems = []
    for stage, d in run.dirs.items():
        problems += [f"{d.name}/{p}" for p in verify_artifacts(run.manifest(stage), d)]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UsageError(problems[0] + more)
    from edgekd.stage_env import provenance

    return {"kind": "run", "path": str(run_dir), "sha256": "ok", "stages": len(run.dirs), "report": run.report,
            "made_on": provenance(run)}


@guarded
def inspect(
    path: Annotated[Path, typer.Argument(help="A bundle folder (bundle.json), its .tar.gz, or a run directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    run_reference: Annotated[bool, typer.Option("--run-reference", help="Also run every artifact on reference.npz with the runtimes installed here.")] = False,
) -> None:
    """Print a bundle's model card (or a run's report) after checking every file's sha256. Exit 2 if any changed."""
    if not path.exists():
        raise UsageError(f"{path} does not exist")
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        from edgekd.bundle.unpack import safe_extract

        with tempfile.TemporaryDirectory() as tmp:
            safe_extract(path, Path(tmp))
            inner = [p for p in Path(tmp).iterdir() if p.is_dir()]
            if len(inner) != 1:
                raise UsageError(f"{path}: expected one bundle folder in the archive, found {len(inner)}")
            _show(inspect_bundle(inner[0], run_reference), as_json, inner[0])
        return
    if path.is_dir() and (path / "report.json").is_file() and not (path / "bundle.json").exists():
        _show(inspect_run(path), as_json, path)
        return
    if not path.is_dir():
        raise UsageError(f"{path} is a file, not a bundle folder, a bundle .tar.gz or a run directory: pass the "
                         "folder edgekd export-bundle or compress wrote, or its .tar.gz")
    if not (path / "bundle.json").is_file() and not (path / "model_card.md").exists() and not (path / "models").exists():
        raise UsageError(f"{path} is neither a bundle (no bundle.json) nor a run (no report.json)")
    _show(inspect_bundle(path, run_reference), as_json, path)


def _show(result: dict[str, Any], as_json: bool, folder: Path) -> None:
    if as_json:
        print_json(result)
        return
    if result["kind"] == "run":
        from edgekd.report.summary import print_report

        print_report(result["report"], console)
        from edgekd.stage_env import print_provenance

        print_provenance(result["made_on"], console)
        console.print(f"manifests: {result['stages']} stage folders, every artifact's sha256 matches")
        return
    from edgekd.bundle.verify import bundle_path

    card = bundle_path(folder, "model_card.md").read_text()
    if console.is_terminal:
        from rich.markdown import Markdown

        console.print(Markdown(card))
    else:  # a log, a file or `| less`: the markdown itself, whole (never cut to a width)
        console.print(card)
    for art in result["bundle"]["artifacts"]:
        summary = ((art.get("verified") or {}).get("integer") or {}).get("summary")
        if summary:
            console.print(f"{art['name']}: {summary}")
    console.print(f"[green]ok[/]: {result['files_checked']} files match bundle.json's sha256", markup=True)
    for name, r in (result.get("reference") or {}).items():
        console.print(f"reference {name}: {r.get('status')}")
    if any(r.get("status") == "mismatch" for r in (result.get("reference") or {}).values()):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect)
