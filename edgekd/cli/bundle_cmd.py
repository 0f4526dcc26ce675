"""`edgekd export-bundle RUN --formats ... --out DIR`: a verified bundle for mobile and device teams."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from edgekd.cli.common import console, guarded, print_json, set_run_dir, stdout_to_stderr

FORMATS_HELP = ("Comma-separated or repeated: onnx, ort, openvino, tensorrt (when the run built a plan), and "
                "with the mobile extra executorch, tflite, coreml. Default: onnx,ort,openvino(,tensorrt), and the mobile formats "
                "when the mobile extra is installed.")


@guarded
def export_bundle(
    run: Annotated[Path, typer.Argument(help="A finished run directory (it holds report.json).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle folder to write; <out>.tar.gz is written beside it.")],
    formats: Annotated[Optional[list[str]], typer.Option("--formats", "-f", help=FORMATS_HELP)] = None,
    force: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print bundle.json to stdout.")] = False,
    tflite_io: Annotated[str, typer.Option("--tflite-io", help="INT8 .tflite input/output: int8 (as litert-torch "
                                           "writes it; scale and zero point in bundle.json) or float (a QUANTIZE "
                                           "and a DEQUANTIZE at the ends, the body integer).")] = "int8",
) -> None:
    """Write models, model card, preprocessing, eval set and reference outputs as a folder and a .tar.gz.

    Every artifact is loaded back and run on the reference inputs; the results are recorded in bundle.json
    ('verified'). Exit 1 when an artifact fails its check, 2 for bad input or a missing package.
    """
    import contextlib

    from edgekd.bundle.build import write_bundle
    from edgekd.bundle.verify import load_bundle
    from edgekd.rundir import RunDirLock, check_writable

    check_writable(out, "--out")
    inside = run.is_dir() and (out.resolve() == run.resolve() or run.resolve() in out.resolve().parents)
    set_run_dir(run)
    with RunDirLock(run.resolve()) if inside else contextlib.nullcontext(), \
            stdout_to_stderr(as_json):  # one writer per run directory; --json: stdout holds the JSON alone
        folder = write_bundle(run, out, formats, force=force, tflite_io=tflite_io)
    bundle = load_bundle(folder)
    if as_json:
        print_json(bundle.model_dump(mode="json"))
    else:
        for a in bundle.artifacts:
            v = a.verified
            state = ("[green]verified[/]" if v.get("passed") else "[red]FAILED[/]") if v.get("loaded_and_run") \
                else f"[yellow]not run here[/] ({escape(str(v.get('not_run')))})"
            top1 = "-" if a.top1 is None else f"{a.top1:.2%}"
            integer = (v.get("integer") or {}).get("summary")  # "INT8 except 1 layer(s) in FP32: ..."
            state += f" ({escape(integer)})" if integer else ""
            console.print(f"{escape(a.name):<24} {a.format:<12} {a.precision:<5} top-1 {top1:>7}  {state}", markup=True)
        for name, why in (bundle.verification.get("not_built") or {}).items():
            console.print(f"[yellow]not built[/] {escape(name)}: {escape(why)}", markup=True)
        console.print(f"bundle: {folder}  archive: {folder.with_name(bundle.archive or '')}")
    if not bundle.verification.get("passed", False):
        why = {a.name: (a.verified.get("integer") or {}).get("summary") for a in bundle.artifacts}
        failed = ", ".join(f"{n} ({why[n]})" if why.get(n) else n for n in bundle.verification.get("failed", []))
        from edgekd.cli.common import fail

        raise fail(escape(f"verification failed for: {failed} (see {folder}/bundle.json 'verified')"), 1)


def register(app: typer.Typer) -> None:
    app.command("export-bundle")(export_bundle)
