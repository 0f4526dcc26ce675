"""`edgekd compress`: the whole chain, resumable, with a verdict and an exit code."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edgekd.cli.common import console, guarded, print_json
from edgekd.errors import require
from edgekd.plan import CompressOptions, Transfer, Weighting, load_pipeline_file, validate_options

Opt = typer.Option


@guarded
def compress(
    target: Annotated[Optional[str], Opt("--target", "-t", help="Target profile name (see `edgekd targets`) or a YAML file. Default: intel-cpu.")] = None,
    data: Annotated[Optional[str], Opt(help="ImageFolder tree with train/ and val/ (or test/), or one tree split by --split-seed. Default: the embedded sklearn digits.")] = None,
    teacher: Annotated[Optional[str], Opt(help="Teacher architecture (e.g. cifar_resnet56, resnet50, timm:convnext_tiny). Default: cifar_resnet20.")] = None,
    teacher_weights: Annotated[Optional[Path], Opt(help="Local teacher checkpoint (state_dict, or a dict holding one; 'module.' prefixes are stripped).")] = None,
    pretrained: Annotated[Optional[bool], Opt("--pretrained/--no-pretrained", help="Use the architecture's published pretrained weights (needs the network or a local torch cache).")] = None,
    student: Annotated[Optional[str], Opt(help="Student architecture (small_cnn, cifar_resnet20, resnet18_cifar, mobilenet_v3_small, ...). Default: small_cnn.")] = None,
    student_weights: Annotated[Optional[Path], Opt(help="Initial student weights (the head is re-initialised when classes differ).")] = None,
    transfer: Annotated[Optional[Transfer], Opt(help="feature: frozen backbone, new head; full: everything; hybrid: head first, then everything; staged: unfreeze from the head back; none.")] = None,
    epochs: Annotated[Optional[int], Opt(help="Shorthand: sets the distill epochs and scales teacher/finetune/qad epochs with it.")] = None,
    teacher_epochs: Annotated[Optional[int], Opt(help="Epochs to train a teacher from scratch on the source task (no pretrained teacher).")] = None,
    finetune_epochs: Annotated[Optional[int], Opt(help="Transfer fine-tune epochs (hybrid: after the probe).")] = None,
    distill_epochs: Annotated[Optional[int], Opt(help="Distillation epochs.")] = None,
    qad_epochs: Annotated[Optional[int], Opt(help="Quantization-aware distillation epochs.")] = None,
    batch_size: Annotated[Optional[int], Opt(help="Global batch size (all processes together).")] = None,
    lr: Annotated[Optional[float], Opt(help="Learning rate of teacher training and distillation.")] = None,
    temperature: Annotated[Optional[float], Opt("--temperature", "-T", help="KD temperature T (0 < T <= 100).")] = None,
    alpha: Annotated[Optional[float], Opt(help="Weight of the soft (teacher) term in [0, 1]; 1-alpha weights the label term.")] = None,
    attention: Annotated[Optional[list[str]], Opt(help="Attention transfer pair STUDENT_LAYER:TEACHER_LAYER (repeatable).")] = None,
    hint: Annotated[Optional[list[str]], Opt(help="FitNets hint pair STUDENT_LAYER:TEACHER_LAYER (repeatable).")] = None,
    weighting: Annotated[Optional[Weighting], Opt(help="Per-sample loss weights: uniform, teacher_confidence or teacher_loss.")] = None,
    calib: Annotated[Optional[Path], Opt(help="A calibration set (.npz, see calib_data/README.md) instead of sampling the training split.")] = None,
    calib_size: Annotated[Optional[int], Opt(help="Calibration images sampled (stratified) from the training split.")] = None,
    max_drop: Annotated[Optional[float], Opt(help="Largest allowed top-1 drop (points) of the INT8 artifact below the fine-tuned teacher. Default: the target's.")] = None,
    accuracy_floor: Annotated[Optional[float], Opt(help="Absolute top-1 floor (0..1) for the INT8 artifact, instead of --max-drop.")] = None,
    input_size: Annotated[Optional[str], Opt("--input-size", help="Model input N or HxW pixels (eval: resize the shorter side, centre crop). Default: the target's, else the pretrained teacher's published size, else the data's median (at most 224).")] = None,
    strict_data: Annotated[Optional[bool], Opt("--strict-data", help="Unreadable image files are an error (default: skipped with a warning and listed in the report).")] = None,
    seed: Annotated[Optional[int], Opt(help="Seed of every random choice.")] = None,
    threads: Annotated[Optional[int], Opt(help="CPU threads for training (torch.set_num_threads); results do not depend on it.")] = None,
    sync_bn: Annotated[Optional[bool], Opt("--sync-bn/--no-sync-bn", help="Under torchrun on GPUs: BatchNorm statistics over the global batch (SyncBatchNorm) in the teacher, finetune and distill stages.")] = None,
    config: Annotated[Optional[Path], Opt("--config", help="YAML pipeline file with the same options (flags override it).")] = None,
    run_dir: Annotated[Optional[Path], Opt(help="Run directory. Default: runs/<data>-<target>.")] = None,
    strict: Annotated[bool, Opt(help="Exit 1 also when a budget judged only on an estimate fails.")] = False,
    bundle: Annotated[bool, Opt("--bundle/--no-bundle", help="Write a verified artifact bundle into RUN_DIR/bundle (and bundle.tar.gz) at the end.")] = True,
    as_json: Annotated[bool, Opt("--json", help="Print report.json to stdout instead of tables.")] = False,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Run teacher -> finetune -> distill -> qad -> export -> compile -> bench and judge the target's budgets.

    Finished stages are reused: the same command again skips them; changing one option reruns that stage
    and the ones after it.
    """
    flags = {k: v for k, v in locals().items() if k not in ("config", "run_dir", "strict", "as_json", "quiet",
                                                            "epochs", "bundle") and v is not None}
    values: dict[str, Any] = load_pipeline_file(config) if config else {}
    if epochs is not None:
        values.update(distill_epochs=epochs, teacher_epochs=max(1, epochs * 2 // 3),
                      finetune_epochs=max(1, epochs // 3), qad_epochs=max(1, epochs // 6))
    values.update({k: (str(v) if isinstance(v, Path) else v) for k, v in flags.items()})
    opts = validate_options(values)
    code = run_compress(opts, run_dir, strict=strict, as_json=as_json, quiet=quiet, bundle=bundle)
    raise typer.Exit(code)


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


def run_compress(opts: CompressOptions, run_dir: Path | None, *, strict: bool = False, as_json: bool = False,
                 quiet: bool = False, bundle: bool = False) -> int:
    from edgekd.targets import load_target

    target = load_target(opts.target)
    check_extras(target)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgekd.data.dataset import DataConfig, load_data
    from edgekd.pipeline import run_pipeline
    from edgekd.plan import build_specs
    from edgekd.report.summary import build_report, print_report, write_reports

    run_dir = (run_dir or default_run_dir(opts)).resolve()
    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    from edgekd.data.sizing import preprocessing_options

    data_cfg = DataConfig(source=opts.data, split_seed=opts.split_seed, val_fraction=opts.val_fraction,
                          max_train_per_class=opts.max_train_per_class, max_val_per_class=opts.max_val_per_class,
                          **preprocessing_options(opts, target))
    load = functools.lru_cache(maxsize=1)(lambda: load_data(data_cfg, run_dir / ".cache"))
    dataset = load()  # bad data fails here, before any stage folder is written
    specs = build_specs(opts, target, dataset.preprocessing.channels, dataset.preprocessing.input_size)
    from edgekd.preflight import preflight

    preflight(opts, dataset.num_classes, dataset.preprocessing.channels, dataset.preprocessing.input_size[0])
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, disable=quiet or as_json, transient=True)

    def announce(outcome) -> None:
        if not as_json:
            state = "reused" if outcome.skipped else f"done in {outcome.manifest.wall_s:.1f}s"
            console.print(f"[bold]{outcome.spec.name}[/] {outcome.manifest.id} {state}")

    with progress:
        outcomes = run_pipeline(specs, run_dir, fingerprint=lambda: dataset.fingerprint, data_loader=load,
                                console=console, progress=progress, on_stage=announce)
    from edgekd.train import dist

    if not dist.context().is_main:
        return 0
    report = build_report(outcomes, opts, target, dataset, run_dir, strict=strict)
    write_reports(report, run_dir)
    if bundle:
        from edgekd.bundle.build import write_bundle

        folder = write_bundle(run_dir, run_dir / "bundle", force=True)
        report["bundle"] = str(folder)
        if not as_json:
            console.print(f"bundle: {folder} (and {folder.name}.tar.gz), verified: "
                          f"{'yes' if _bundle_passed(folder) else 'NO - see bundle.json'}")
    if as_json:
        print_json(report)
    else:
        print_report(report, console)
    return int(report["exit_code"])


def _bundle_passed(folder: Path) -> bool:
    from edgekd.bundle.verify import load_bundle

    return bool(load_bundle(folder).verification.get("passed", False))


def register(app: typer.Typer) -> None:
    app.command("compress")(compress)
