"""`edgekd eval BUNDLE --images DIR`: top-1 of every runnable artifact of a bundle on raw image files.

Torch-free (the base package and a runtime): the images of an ImageFolder tree (one folder per class, named
as the bundle's classes) are decoded with the bundle's recorded preprocessing through the same function the
training data loader used (edgekd.preprocess_reference.load_image, shipped in the bundle as preprocess.py),
so the figure is what a device team gets from the same files. An ExecuTorch .pte is run only with --pte
(`pte=True`): executorch.runtime imports torch; .tflite (ai_edge_litert) runs without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from edgekd.cli.common import console, err_console, guarded, print_json
from edgekd.errors import UsageError


# ExecuTorch's Python runtime (executorch.runtime) imports torch; eval stays torch-free unless asked for the .pte
PTE_SKIPPED = "skipped: ExecuTorch's Python runtime imports torch (pass --pte to run it)"


def run_eval(bundle_dir: Path, images: Path, *, strict: bool = False, batch: int = 64,
             workers: int | None = None, pte: bool = False) -> dict[str, Any]:
    from edgekd.bundle.verify import NotRunnable, check_files, load_bundle, runner
    from edgekd.data.sources import index_folder, load_images
    from edgekd.preprocess import normalize_np

    if not bundle_dir.is_dir():
        raise UsageError(f"{bundle_dir} is not a bundle folder (edgekd export-bundle writes one; unpack a "
                         ".tar.gz first)")
    bundle = load_bundle(bundle_dir)
    problems = check_files(bundle_dir, bundle)
    if problems:
        raise UsageError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    pre = bundle.preprocessing
    if pre.source != "image_file":
        raise UsageError(f"{bundle_dir.name}'s model takes {pre.input_size[0]}x{pre.input_size[1]} arrays, not image "
                         "files (it was trained on the embedded digits): use `edgekd bench BUNDLE` instead")
    index = index_folder(images, min_classes=1)
    unknown = [c for c in index.class_names if c not in bundle.classes]
    if unknown:
        raise UsageError(f"{images / unknown[0]}: no class '{unknown[0]}' in the bundle (its classes: "
                         f"{', '.join(bundle.classes[:10])}{' ...' if len(bundle.classes) > 10 else ''})")
    to_bundle = np.asarray([bundle.classes.index(c) for c in index.class_names], dtype=np.int64)
    split = load_images(index, pre, None, "eval", strict=strict, workers=workers)
    labels = to_bundle[split.labels]
    # a teacher that takes another input size than the student (bundle.teacher_preprocessing): the same files
    # decoded at its size, once, when a teacher artifact runs
    tpre, teacher_split = bundle.teacher_preprocessing, None
    rows = []
    for art in bundle.artifacts:
        row: dict[str, Any] = {"artifact": art.name, "format": art.format, "precision": art.precision,
                               "recorded_top1": art.top1}
        if art.format == "pte" and not pte:
            rows.append({**row, "ran": False, "why": PTE_SKIPPED})
            continue
        try:
            infer = runner(bundle_dir, art)
        except NotRunnable as exc:
            rows.append({**row, "ran": False, "why": str(exc)})
            continue
        a_pre, images = pre, split.images
        if tpre is not None and art.role == "teacher_fp32":
            if teacher_split is None:
                teacher_split = load_images(index, tpre, None, "eval", strict=strict, workers=workers)
            a_pre, images = tpre, teacher_split.images
            row["input_size"] = list(tpre.input_size)
        correct = 0
        for s in range(0, len(labels), batch):
            logits = np.asarray(infer(normalize_np(images[s:s + batch], a_pre)))
            correct += int((logits.argmax(1) == labels[s:s + batch]).sum())
        rows.append({**row, "ran": True, "runtime": "openvino CPU" if art.format == "openvino_ir" else art.runtimes[0],
                     "top1": correct / len(labels), "correct": correct})
    if not any(r["ran"] for r in rows):
        why = rows[0]["why"] if rows else "none listed"
        raise UsageError(f"no artifact of {bundle_dir.name} can run here ({why}): "
                         "install a runtime, e.g. pip install 'edgekd[cpu]'")
    return {"bundle": str(bundle_dir), "images": str(images), "n_images": int(len(labels)),
            "classes_present": index.class_names, "skipped": split.skipped,
            "preprocessing": pre.model_dump(mode="json"),
            "artifacts": rows}


def print_eval(report: dict[str, Any]) -> None:
    table = Table(title=f"edgekd eval: {report['n_images']} images from {report['images']}")
    for col in ("artifact", "format", "precision", "runtime", "top-1", "bundle's recorded top-1"):
        table.add_column(col)
    for r in report["artifacts"]:
        rec = "-" if r["recorded_top1"] is None else f"{r['recorded_top1']:.2%}"
        if r["ran"]:
            table.add_row(r["artifact"], r["format"], r["precision"], r["runtime"], f"{r['top1']:.2%}", rec)
        else:
            table.add_row(r["artifact"], r["format"], r["precision"], "-", f"not run: {r['why']}", rec)
    console.print(table)
    if report["skipped"]:
        err_console.print(f"[yellow]note:[/] {len(report['skipped'])} unreadable files left out", markup=True)


@guarded
def eval_bundle(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder (bundle.json) written by compress or export-bundle.")],
    images: Annotated[Path, typer.Option("--images", help="ImageFolder tree: one folder per class, named as the "
                                         "bundle's classes (a subset of them is fine).")],
    strict_data: Annotated[bool, typer.Option("--strict-data", help="Unreadable image files are an error "
                                              "(default: left out with a warning).")] = False,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Images per inference call.")] = 64,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    pte: Annotated[bool, typer.Option("--pte", help="Also run the ExecuTorch .pte artifacts (the `mobile` extra; "
                                      "its Python runtime imports torch, so they are skipped by default).")] = False,
) -> None:
    """Top-1 of each runnable artifact of a bundle on raw image files, with the bundle's own preprocessing.

    Needs only the base package and a runtime (no torch; --pte, for ExecuTorch, does import it). Exit 0 when at least one artifact ran; 2 on bad
    input or when no artifact can run here.
    """
    report = run_eval(bundle, images, strict=strict_data, batch=batch, pte=pte)
    if as_json:
        print_json(report)
    else:
        print_eval(report)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_bundle)
