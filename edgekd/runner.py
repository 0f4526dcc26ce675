"""The run behind `edgekd compress` and `edgekd.compress`: load the data, plan the stages, run or reuse them,
write the bundle and the reports, and return report.json's content. Raises edgekd.errors exceptions; prints
progress (stage lines, bars) but no tables: the CLI (edgekd.cli.compress) prints those."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.cli.common import console, err_console, set_run_dir, stdout_to_stderr
from edgekd.errors import require
from edgekd.plan import CompressOptions


def default_run_dir(opts: CompressOptions) -> Path:
    data_name = "digits" if opts.data == "digits" else Path(opts.data).resolve().name
    target_name = Path(opts.target).stem
    return Path("runs") / f"{data_name}-{target_name}"


def check_extras(target) -> None:
    """Exit 2 before any work when a package that a stage must run here is missing."""
    require("torch", "train", "the training stages need it")
    require("nncf", "train", "quantization-aware distillation needs it")
    require("onnx", "train")
    require("onnxruntime", "cpu", "the export stage checks ONNX against PyTorch with it")
    if target.runtime.name == "openvino":
        from edgekd.runtimes.host import host_arch

        if target.device.arch in (host_arch(), "any"):
            require("openvino", "cpu", f"target {target.name} runs on OpenVINO")
    from edgekd.quant.pt2e import require_route

    for route in target.pt2e_routes:  # a PT2E route needs its runtime's quantizer (the mobile extra)
        require_route(route)


def data_config(opts: CompressOptions, target):
    """The data options of a compress run (edgekd.data.dataset.DataConfig)."""
    from edgekd.data.dataset import DataConfig
    from edgekd.data.sizing import preprocessing_options

    return DataConfig(source=opts.data, split_seed=opts.split_seed, val_fraction=opts.val_fraction,
                      test_fraction=opts.test_fraction, max_train_per_class=opts.max_train_per_class,
                      max_val_per_class=opts.max_val_per_class, max_test_per_class=opts.max_test_per_class,
                      **preprocessing_options(opts, target))


def _scratch_size(opts: CompressOptions, data_cfg):
    """(data config, reachable()'s answer for the default teacher or None, words for the first line): photos whose
    size the data decides are scaled to a SCRATCH_SIDE shorter side when the default teacher will train here from
    scratch (edgekd.teacher_choice), decided from the folder's planned preprocessing before any image is decoded."""
    from edgekd.data.dataset import planned_preprocessing
    from edgekd.teacher_choice import default_arch, reachable, scratch_size_cap

    pre = planned_preprocessing(data_cfg)
    arch = default_arch(opts, pre.channels, tuple(pre.input_size)) if pre is not None else None
    if arch is None:
        return data_cfg, None, ""
    reach = reachable(arch)
    cap = scratch_size_cap(opts, pre.channels, tuple(pre.input_size), reach)
    if cap is None or data_cfg.input_size is not None or min(pre.input_size) <= cap:
        return data_cfg, reach, ""
    from edgekd.search.resolution import scaled_size

    own = f"{pre.input_size[0]}x{pre.input_size[1]}"
    h, w = scaled_size(tuple(pre.input_size), cap / min(pre.input_size))
    data_cfg = data_cfg.model_copy(update={
        "input_size": (h, w), "size_source": f"the data's {own} scaled to a {cap} px shorter side for a teacher "
        "trained here from scratch"})
    return data_cfg, reach, (f"; at {h}x{w} px, the data's {own} scaled down (training from scratch costs grow with "
                             "the pixels; --input-size HxW trains at another size)")


def run_report(opts: CompressOptions, run_dir: Path | None, *, strict: bool = False, as_json: bool = False,
               quiet: bool = False, bundle: bool = False, wait: bool = False) -> dict[str, Any] | None:
    """Run the chain and return report.json's content (None on the other ranks of a torchrun run); what
    edgekd.compress and `edgekd compress` share. Raises edgekd.errors exceptions; prints progress only."""
    with stdout_to_stderr(as_json):
        return _run(opts, run_dir, strict=strict, as_json=as_json, quiet=quiet, bundle=bundle, wait=wait)


def _run(opts: CompressOptions, run_dir: Path | None, *, strict: bool, as_json: bool, quiet: bool, bundle: bool,
         wait: bool) -> dict[str, Any] | None:
    import os

    from edgekd.rundir import RunDirLock, check_writable
    from edgekd.targets import load_target

    target = load_target(opts.target)
    from edgekd.search.resolution import check_pinned_size, check_resolution_options

    check_pinned_size(opts, target)
    run_dir = (run_dir or default_run_dir(opts)).resolve()
    check_writable(run_dir)  # a file or a read-only folder: exit 2 before anything is written
    lock = RunDirLock(run_dir, wait=wait)
    if os.environ.get("RANK", "0") == "0":
        lock.check_free()  # another writer: say so now, not after loading the data
    check_extras(target)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgekd.data.dataset import DataLoader
    from edgekd.plan import build_specs

    set_run_dir(run_dir)  # an internal error's traceback goes to RUN_DIR/logs
    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    data_cfg, reach, scaled = _scratch_size(opts, data_config(opts, target))
    load = DataLoader(data_cfg, run_dir / ".cache")  # and the same images at a searched student's size
    dataset = load()  # bad data fails here, before any stage folder is written
    from edgekd.teacher_choice import choose_teacher

    pre = dataset.preprocessing
    choice = choose_teacher(opts, dataset.num_classes, len(dataset.train), pre.channels, tuple(pre.input_size),
                            reach)
    opts = choice.options  # a user's folder without a teacher: pretrained when reachable, else all classes
    line = choice.line + scaled if choice.line else choice.line
    if line and os.environ.get("RANK", "0") == "0":
        (err_console if as_json else console).print(line, markup=False)
    specs = build_specs(opts, target, dataset.preprocessing.channels, dataset.preprocessing.input_size)
    from edgekd.preflight import preflight

    preflight(opts, dataset.num_classes, dataset.preprocessing.channels, dataset.preprocessing.input_size[0],
              dataset.preprocessing.class_names)
    check_resolution_options(opts, dataset.preprocessing)
    from edgekd.search.budget import check_time_budget

    check_time_budget(opts, dataset)  # --time-budget shorter than one proxy run: exit 2 before any stage runs
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, disable=quiet or as_json, transient=True)
    from edgekd.train import dist

    if not dist.context().is_main:  # under torchrun only rank 0 writes the run directory (and holds its lock)
        _run_stages(specs, run_dir, dataset, load, progress, as_json)
        return None
    with lock:
        outcomes = _run_stages(specs, run_dir, dataset, load, progress, as_json)
        return _publish(outcomes, opts, target, dataset, run_dir, strict=strict, as_json=as_json, bundle=bundle)


def _run_stages(specs, run_dir: Path, dataset, load, progress, as_json: bool):
    from edgekd.pipeline import run_pipeline

    def announce(outcome) -> None:
        if not as_json:
            state = "reused" if outcome.skipped else f"done in {outcome.manifest.wall_s:.1f}s"
            console.print(f"[bold]{outcome.spec.name}[/] {outcome.manifest.id} {state}", markup=True)

    with progress:
        return run_pipeline(specs, run_dir, fingerprint=lambda: dataset.fingerprint, seed_fingerprint=dataset.seed_key,
                            data_loader=load, console=console, progress=progress, on_stage=announce)


def _publish(outcomes, opts: CompressOptions, target, dataset, run_dir: Path, *, strict: bool, as_json: bool,
             bundle: bool) -> dict[str, Any]:
    """The bundle first, then the reports: a report never names a bundle that is not there. An earlier
    variant's report and bundle (another final stage id) are moved to history/ first, not overwritten."""
    import json

    from edgekd.fsio import remove_dead_leftovers
    from edgekd.report.summary import build_report, write_reports
    from edgekd.rundir import final_stage_id, keep_earlier_report

    say = err_console.print if as_json else console.print
    remove_dead_leftovers(run_dir)
    report = build_report(outcomes, opts, target, dataset, run_dir, strict=strict)
    moved = keep_earlier_report(run_dir, final_stage_id(report))
    if moved is not None:
        say(f"the earlier report and bundle of this run directory (final stage {moved.name.split('-', 1)[1]}) "
            f"were moved to {moved}")
    if bundle:
        from edgekd.bundle.build import write_bundle

        folder = write_bundle(run_dir, run_dir / "bundle", force=True,
                              report=json.loads(json.dumps(report, default=str)))
        report["bundle"] = str(folder)
        if not as_json:
            console.print(f"bundle: {folder} (and {folder.name}.tar.gz), verified: "
                          f"{'yes' if _bundle_passed(folder) else 'NO - see bundle.json'}")
    write_reports(report, run_dir)
    return report


def _bundle_passed(folder: Path) -> bool:
    from edgekd.bundle.verify import load_bundle

    return bool(load_bundle(folder).verification.get("passed", False))
