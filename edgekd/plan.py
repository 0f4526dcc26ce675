"""From options to stages: the single path that both CLI flags and a YAML pipeline file go through."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgekd.configio import first_error, read_yaml_mapping
from edgekd.errors import UsageError
from edgekd.fsio import sha256_file
from edgekd.paths import require_file
from edgekd.pipeline import StageSpec
from edgekd.search import Share
from edgekd.targets import TargetProfile

Transfer = Literal["feature", "full", "hybrid", "staged", "none"]
Weighting = Literal["uniform", "teacher_confidence", "teacher_loss"]


def _cli(*, short: str | None = None, path: bool = False, text: bool = False) -> dict:
    """How a field's flag differs from the default one (edgekd.cli.options): a short alias, a file path
    (checked by the CLI to exist), or a value given as text and parsed by the field's validator."""
    return {"cli": {"short": short, "path": path, "text": text}}


class CompressOptions(BaseModel):
    """Every option of `edgekd compress`; a YAML pipeline file holds the same fields.

    One source for each option: `edgekd compress` derives one flag per field (`--field-name`, booleans as
    `--x/--no-x`, lists repeatable) with the field's description as its help (edgekd.cli.options), so
    adding an option here adds its YAML key and its flag."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field("intel-cpu", description="Target profile name (see `edgekd targets`) or a YAML file.",
                        json_schema_extra=_cli(short="-t"))
    data: str = Field("digits", description="ImageFolder folder: train/ val/ test/; train/ + test/ (or val/: used as "
                      "the test role), val carved from train/; or one tree split into train/val/test. Default: the "
                      "embedded sklearn digits (split like one tree).")
    split_seed: int = Field(0, description="Seed of the stratified val/test carve-outs.")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="Share of each class carved out as the val split (every "
                                "decision is made on it) when no val/ is given beside test/; of train/, or of a "
                                "single tree. 0 < f < 1.")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Share of each class of a single tree (or the digits) "
                                 "carved out as the test split, the only one reported and judged. 0 < f < 1.")
    max_train_per_class: int | None = Field(None, ge=1, description="Use at most N training images per class "
                                            "(a subset, for short runs).")
    max_val_per_class: int | None = Field(None, ge=1, description="Use at most N val images per class.")
    max_test_per_class: int | None = Field(None, ge=1, description="Use at most N test images per class.")
    eval_set_size: int = Field(2000, ge=0, description="Most test images in the eval set shipped for devices "
                               "(eval_set.npz in the run and the bundle): a stratified sample with a fixed seed, each "
                               "class keeping its share; 0: the whole test split. The verdict is always on the whole "
                               "test split.")
    teacher: str | None = Field(None, description="Teacher: a registry name (cifar_resnet56, resnet50, "
                                "timm:convnext_tiny), an import path pkg.module:factory or file.py:factory (this "
                                "RUNS that Python code; it must return an nn.Module), a torch.export .pt2 archive, or "
                                "an ONNX file (logits through ONNX Runtime; never fine-tuned). Default: cifar_resnet20 on "
                                "the embedded digits; on a folder resnet18 with ImageNet weights when they are "
                                "reachable, else cifar_resnet20 trained on all classes (edgekd/teacher_choice.py; the "
                                "first line of output says which).")
    teacher_kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of a teacher given "
                                           "as an import path (JSON or YAML mapping, e.g. '{\"width\": 64}').",
                                           json_schema_extra=_cli(text=True))
    teacher_output: str | None = Field(None, description="Which output of the teacher's forward is the logits when it "
                                       "returns a tuple/list (an index) or a dict / HF-style object (a key).")
    teacher_classes: str | None = Field(None, description="ONNX teacher: a text file with its class names, one per "
                                        "line, in its output order; checked against the data's class names.",
                                        json_schema_extra=_cli(path=True))
    teacher_weights: str | None = Field(None, description="Local teacher checkpoint (state_dict, or a dict holding "
                                        "one; 'module.' prefixes are stripped).", json_schema_extra=_cli(path=True))
    pretrained: bool = Field(False, description="Use the architecture's published pretrained weights (needs the "
                             "network or a local torch cache).")
    source_classes: int | None = Field(None, description="A teacher trained here learns the first N classes "
                                       "(the source task) before the transfer. Default: half the classes, at least 2, on the "
                                       "embedded digits; all classes on a folder.")
    student: str = Field("auto", description="Student architecture (small_cnn, cifar_resnet20, resnet18_cifar, "
                         "mobilenet_v3_small, ...), an import path or .pt2 as for --teacher (an import path RUNS "
                         "that code), or auto: search the family and the pruned teacher for the most "
                         "accurate student that meets the target's latency budget (edgekd/stages/search.py).")
    student_kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of a student given "
                                           "as an import path (JSON or YAML mapping).",
                                           json_schema_extra=_cli(text=True))
    student_output: str | None = Field(None, description="Which output of the student's forward is the logits (an "
                                       "index or a key), as --teacher-output.")
    student_weights: str | None = Field(None, description="Initial student weights (the head is re-initialised when "
                                        "classes differ).", json_schema_extra=_cli(path=True))
    transfer: Transfer = Field("hybrid", description="feature: frozen backbone, new head; full: everything; hybrid: "
                               "head first, then everything; staged: unfreeze from the head back; none.")
    teacher_epochs: int = Field(6, ge=0, description="Epochs to train a teacher from scratch (no pretrained teacher). On a "
                                "folder, when not given: this default plus --finetune-epochs (the finetune stage is "
                                "skipped), raised to 500 steps, at most 60 (edgekd/teacher_choice.py).")
    finetune_epochs: int = Field(10, ge=0, description="Transfer fine-tune epochs (hybrid: after the probe).")
    backbone_lr_mult: float | None = Field(None, gt=0, le=1, description="Hybrid and staged transfer: the "
                                           "backbone's learning rate as a share of the head's. Default: 0.1 for a "
                                           "pretrained or loaded teacher (keep features learned from more data), "
                                           "1.0 for a teacher trained here on the source task (its features saw "
                                           "only part of your classes).")
    probe_epochs: int = Field(1, ge=0, description="Hybrid transfer: epochs that train the new head alone first.")
    distill_epochs: int = Field(10, ge=0, description="Distillation epochs.")
    qad_epochs: int = Field(2, ge=0, description="Quantization-aware distillation epochs (0: PTQ only, calibrated "
                            "but not fine-tuned).")
    batch_size: int = Field(32, ge=1, description="Global batch size (all processes together).")
    lr: float = Field(0.05, gt=0, description="Learning rate of teacher training and distillation.")
    finetune_lr: float = Field(0.05, gt=0, description="Learning rate of the transfer fine-tune.")
    qad_lr: float = Field(0.002, gt=0, description="Learning rate of quantization-aware distillation.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of the label (cross-entropy) "
                                   "terms, in [0, 1).")
    temperature: float = Field(4.0, description="KD temperature T (0 < T <= 100).", json_schema_extra=_cli(short="-T"))
    alpha: float = Field(0.9, description="Weight of the soft (teacher) term in [0, 1]; 1-alpha weights the label "
                         "term.")
    attention: list[str] = Field(default_factory=list, description="Attention transfer pair "
                                 "STUDENT_LAYER:TEACHER_LAYER (repeatable).")
    attention_weight: float = Field(1000.0, description="Weight beta of the attention transfer term.")
    attention_p: float = Field(2.0, description="Exponent p of the attention maps, in (0, 16] (the paper uses 2).")
    hint: list[str] = Field(default_factory=list, description="FitNets hint pair STUDENT_LAYER:TEACHER_LAYER "
                            "(repeatable).")
    hint_weight: float = Field(1.0, description="Weight of the FitNets hint term.")
    hint_batch_norm: bool = Field(False, description="BatchNorm after the hint's 1x1 regressor (when channels "
                                  "differ).")
    weighting: Weighting = Field("uniform", description="Per-sample loss weights w = softmax(sign * score / tau): "
                                 "uniform, teacher_confidence or teacher_loss.")
    weighting_tau: float = Field(1.0, gt=0, description="Temperature tau of the per-sample weights (> 0; large: "
                                 "near uniform).")
    weighting_sign: Literal[1, -1] = Field(1, description="1 favours samples with high scores, -1 low ones.")
    train_only: list[str] | None = Field(None, description="Distill: train only parameters whose names match this "
                                         "pattern (repeatable); the others stay frozen. Default: all.")
    max_update_norm: float | None = Field(None, gt=0, description="Distill: cap on the norm of one optimizer "
                                          "update of the parameters. Default: no cap.")
    augment: Literal["none", "crop", "crop_flip", "rrc_flip"] | None = Field(
        None, description="Training augmentation. Default: by channels and input size "
        "(edgekd.data.sizing.default_augment).")
    mean: list[float] | None = Field(None, description="Per-channel mean the models expect (of pixel values scaled "
                                     "to 0..1; repeatable, one per channel). Default: ImageNet's for RGB, 0.5 for "
                                     "grey; a model you bring (import path, .pt2, .onnx) should state its own.")
    std: list[float] | None = Field(None, description="Per-channel standard deviation, as --mean.")
    input_size: tuple[int, int] | None = Field(
        None, description="Model input N or HxW pixels (eval: resize the shorter side, centre crop). Default: the "
        "target's, else the pretrained teacher's published size, else the data's median (at most 224).",
        json_schema_extra=_cli(text=True))
    student_input_size: tuple[int, int] | None = Field(
        None, description="Student input N or HxW pixels, smaller than the teacher's: the student is distilled "
        "from the teacher at the teacher's size (each batch downscaled for the student) and deployed at its own; "
        "the bundle's preprocessing says so. Default: the data's size (with --student auto: the search's choice).",
        json_schema_extra=_cli(text=True))
    strict_data: bool = Field(False, description="Unreadable image files are an error (default: skipped with a "
                              "warning and listed in the report).")
    cache_teacher: bool = Field(True, description="Distill: compute the teacher's outputs once and reuse them "
                                "when no augmentation or feature loss needs them fresh.")
    calib: str | None = Field(None, description="A calibration set (.npz, see calib_data/README.md) instead of "
                              "sampling the training split.", json_schema_extra=_cli(path=True))
    calib_size: int = Field(300, ge=1, description="Calibration images sampled (stratified) from the training split.")
    ignore_layers: list[str] = Field(default_factory=list, description="Layer kept in floating point by "
                                     "quantization (repeatable).")
    max_drop: float | None = Field(None, ge=0, description="Largest allowed top-1 drop (points) of the INT8 artifact "
                                   "below the fine-tuned teacher. Default: the target's.")
    accuracy_floor: float | None = Field(None, ge=0, le=1, description="Absolute top-1 floor (0..1) for the INT8 "
                                         "artifact, instead of --max-drop.")
    max_fallback_layers: int = Field(3, ge=0, description="Most layers the fallback may keep in floating point.")
    fallback_budget: float = Field(10.0, ge=0, description="Minutes the floating-point fallback may spend when the "
                                   "INT8 model misses the accuracy requirement (PTQ candidates, then one QAD); 0 "
                                   "disables it.")
    opset: int = Field(17, ge=17, description="ONNX opset of the export.")
    seed: int = Field(0, description="Seed of every random choice.")
    threads: int | None = Field(None, ge=1, description="CPU threads for training (torch.set_num_threads). Not part "
                                "of stage ids: a run is reproducible bit for bit at one thread count, while another "
                                "count sums floats in another order, so weights differ in their last bits.")
    sync_bn: bool = Field(False, description="Under torchrun on GPUs: BatchNorm statistics over the global batch "
                          "(SyncBatchNorm) in the teacher, finetune and distill stages.")
    time_budget: str | None = Field(None, description="With --student auto: wall time the search may spend (45m, 90s, "
                                    "1.5h; a bare number is minutes); when it is spent the best candidate so far is "
                                    "chosen. Default: no limit.")
    search_max_family: int = Field(5, ge=0, description="With --student auto: family candidates, spread evenly in "
                                   "MACs.")
    search_prune_ratios: list[Share] = Field(default_factory=lambda: [0.5, 0.75], description="With --student auto: "
                                             "channel shares pruned from the teacher, one candidate each "
                                             "(repeatable).")
    search_prune_depths: list[Share] = Field(default_factory=lambda: [0.5, 0.25], description="With --student "
                                             "auto: shares of the teacher's removable residual blocks kept, one "
                                             "depth-pruned candidate each (repeatable).")
    search_resolutions: list[float] = Field(default_factory=lambda: [0.75, 0.5], description="With --student auto: "
                                            "smaller student input sizes the search tries, as fractions of the "
                                            "data's size, for candidates over the latency budget at the larger "
                                            "size (never below 32 px; repeatable; 1 alone: the data's size only).")
    search_importance: Literal["magnitude", "taylor"] = Field("magnitude", description="With --student auto: "
                                                              "channel importance for pruning the teacher.")
    proxy_epochs: int = Field(1, ge=1, description="With --student auto: epochs of each proxy distillation run.")
    proxy_fraction: float = Field(0.25, gt=0, le=1, description="With --student auto: share of the training split "
                                  "in the first rung of proxy runs (at least 1,000 images; doubled each rung).")

    @field_validator("teacher_kwargs", "student_kwargs", mode="before")
    @classmethod
    def _kwargs(cls, value):
        if isinstance(value, str):
            import yaml

            try:
                value = yaml.safe_load(value) if value.strip() else {}
            except yaml.YAMLError as exc:
                raise ValueError(f"not a JSON/YAML mapping ({str(exc).splitlines()[0]})") from None
            if not isinstance(value, dict):
                raise ValueError(f"a JSON/YAML mapping of keyword arguments, got {type(value).__name__}")
        return value

    @field_validator("input_size", "student_input_size", mode="before")
    @classmethod
    def _input_size(cls, value):
        from edgekd.data.sizing import parse_input_size

        return parse_input_size(value)


def load_pipeline_file(path: Path) -> dict:
    return read_yaml_mapping(path, "pipeline file")


def validate_options(values: dict) -> CompressOptions:
    try:
        opts = CompressOptions.model_validate(values)
    except ValidationError as exc:
        message = first_error(exc, unknown="unknown option").replace("field '", "option '")
        # name the flag too: a YAML file and the command line spell the same option two ways
        message = re.sub(r"^option '(\w+)'", lambda m: f"option '{m[1]}' (--{m[1].replace('_', '-')})", message)
        raise UsageError(message) from None
    check_epochs(opts)
    if opts.backbone_lr_mult is not None and opts.transfer not in ("hybrid", "staged"):
        raise UsageError(f"--backbone-lr-mult applies to --transfer hybrid or staged, not {opts.transfer}: "
                         "drop it, or choose one of those")
    if opts.student == "auto":
        from edgekd.search.budget import check_auto_options

        check_auto_options(opts)
    return opts


def check_epochs(opts: CompressOptions) -> None:
    """Training stages whose 0 epochs would ship an untrained (chance-level) model are refused. Allowed at 0:
    `qad_epochs` (PTQ only: calibrated, not fine-tuned; documented), `probe_epochs` (hybrid without the
    probe), `finetune_epochs` with `--transfer none`, `teacher_epochs` with a loaded teacher (not trained here)."""
    trained_here = not (opts.teacher_weights or opts.pretrained)
    for flag, value, used in (("--teacher-epochs", opts.teacher_epochs, trained_here),
                              ("--finetune-epochs", opts.finetune_epochs, opts.transfer != "none"),
                              ("--distill-epochs", opts.distill_epochs, True)):
        if used and value < 1:
            hint = "; --transfer none keeps the teacher as it is" if flag == "--finetune-epochs" else ""
            raise UsageError(f"{flag} {value}: at least 1 epoch is needed (0 would ship an untrained model){hint}")


def backbone_lr_mult(opt: CompressOptions) -> dict[str, float]:
    """The finetune stage's `backbone_lr_mult` for the transfers that read it (hybrid, staged; nothing for the
    others, so it never changes their stage id): the user's, else 0.1 for features learned elsewhere
    (pretrained or loaded weights, the usual discriminative fine-tune) and 1.0 for a teacher trained here on
    the source task. On the digits over 3 splits x 3 seeds, 0.1 left that teacher at 95.95% test on average
    (93.87-98.33%), 1.0 reached 98.14% (97.21-99.16%): bench/RESULTS.md, "Transfer learning rate of a teacher
    trained here"."""
    if opt.transfer not in ("hybrid", "staged"):
        return {}
    if opt.backbone_lr_mult is not None:
        return {"backbone_lr_mult": opt.backbone_lr_mult}
    return {"backbone_lr_mult": 0.1 if opt.teacher_weights or opt.pretrained else 1.0}


def file_sha256(path: str | None, flag: str) -> str | None:
    if path is None:
        return None
    p = Path(path)
    require_file(p, flag)
    return sha256_file(p)


def _pairs(items: list[str], flag: str) -> list[dict[str, str]]:
    out = []
    for item in items:
        if item.count(":") != 1 or not all(item.split(":")):
            raise UsageError(f"{flag} takes STUDENT_LAYER:TEACHER_LAYER (e.g. layer3:layer3), got '{item}'")
        s, t = item.split(":")
        out.append({"student": s, "teacher": t})
    return out


def loss_options(opt: CompressOptions) -> dict:
    """The distillation loss config (edgekd.losses.composite.DistillLossConfig) as plain data."""
    return {
        "kd": {"temperature": opt.temperature, "alpha": opt.alpha},
        "attention": {"pairs": _pairs(opt.attention, "--attention"), "weight": opt.attention_weight,
                      "p": opt.attention_p},
        "hint": {"pairs": _pairs(opt.hint, "--hint"), "weight": opt.hint_weight, "batch_norm": opt.hint_batch_norm},
        "weighting": {"score": opt.weighting, "tau": opt.weighting_tau, "sign": opt.weighting_sign},
        "label_smoothing": opt.label_smoothing,
    }


def model_source(spec: str, role: str, kwargs: dict, output: str | None):
    """The resolved model source of --teacher / --student (edgekd.models.sources): one line when it is unknown,
    missing, or cannot take the given kwargs/output."""
    from edgekd.models.sources import resolve

    return resolve(spec, role=role, kwargs=kwargs, output=output)


def source_config(source) -> dict:
    """A stage config's source fields: nothing for a registry model (its stage ids stay as they were); the
    kwargs, output and content hash of a model the user brought, so editing their file reruns the stages."""
    if source is None or source.kind == "registry":
        return {}
    return {"kwargs": source.kwargs, "output": source.output, "source_sha256": source.sha256}


def check_source_options(opt: CompressOptions, teacher, student) -> None:
    """What a teacher or student of another kind cannot do, said before anything runs."""
    if opt.teacher_kwargs and teacher.kind != "import":
        raise UsageError(f"--teacher-kwargs applies to a teacher given as an import path (pkg.module:factory), not "
                         f"to {teacher.spec}")
    if opt.student_kwargs and (student is None or student.kind != "import"):
        raise UsageError("--student-kwargs applies to a student given as an import path (pkg.module:factory)")
    if teacher.kind in ("onnx", "export"):
        taps = [p.split(":", 1)[1] for p in (*opt.attention, *opt.hint) if ":" in p]
        if taps:
            kind = "an ONNX teacher gives logits only" if teacher.kind == "onnx" else \
                "a torch.export program runs as one graph, so no layer of it can be hooked"
            raise UsageError(f"--attention/--hint name teacher layer '{taps[0]}', but {kind}: use logit KD alone, "
                             "or a PyTorch teacher (registry name or import path)")
        if opt.pretrained:
            raise UsageError(f"--pretrained applies to registry models; {teacher.spec} brings its own weights")
    if teacher.kind == "onnx" and opt.teacher_weights:
        raise UsageError(f"--teacher-weights cannot load into an ONNX teacher ({teacher.spec}): its weights are in "
                         "the file")
    if opt.teacher_classes and teacher.kind != "onnx":
        raise UsageError("--teacher-classes checks an ONNX teacher's class names; a PyTorch teacher is transferred "
                         "to the data's classes by the finetune stage")


def quant_preset(target: TargetProfile) -> str:
    """NNCF's preset for the target's runtime and device (edgekd.runtimes.base.Runtime.quant_preset)."""
    from edgekd.runtimes import runtime_class

    return runtime_class(target.runtime.name).quant_preset(target.runtime.device)


def pt2e_specs(target: TargetProfile, loss: dict, train: dict) -> list[StageSpec]:
    """The PT2E QAD stage (edgekd.stages.qad_pt2e): the target's PT2E routes with the same losses and QAD
    schedule as the NNCF qad stage, whose calibration images it reuses. A target without one gets the
    XNNPACK route as PTQ only (no training: seconds) when the mobile extra is installed, so the default bundle's
    INT8 .pte/.tflite/.mlpackage exist and are verified."""
    from edgekd.pipeline import config_of
    from edgekd.quant.pt2e import mobile_installed

    routes = target.pt2e_routes
    if not routes:
        if not mobile_installed():
            return []
        routes, train = ["pt2e-xnnpack"], dict(train, epochs=0)
    return [StageSpec("qad_pt2e", config_of("qad_pt2e", routes=routes, loss=loss, train=train),
                      {"teacher": "finetune", "student": "distill", "qad": "qad"})]


def compile_parents(target: TargetProfile, pt2e: list[StageSpec]) -> dict[str, str]:
    """The compile stage reads the exported ONNX files; for a mobile target whose runtime is installed here it
    lowers the PyTorch models and the qad_pt2e program to the runtime's own files (edgekd.export.mobile)."""
    from edgekd.export.mobile import can_compile

    parents = {"export": "export"}
    if can_compile(target.runtime.name) and pt2e:
        parents.update(teacher="finetune", student="distill", pt2e="qad_pt2e")
    return parents


def build_specs(opt: CompressOptions, target: TargetProfile, channels: int,
                input_size: tuple[int, int] = (32, 32)) -> list[StageSpec]:
    """The stage list for `compress`. Imports stage configs (torch) lazily through the pipeline."""
    from edgekd.data.sizing import default_augment
    from edgekd.pipeline import config_of

    augment = opt.augment or default_augment(channels, tuple(input_size))
    common = dict(batch_size=opt.batch_size, seed=opt.seed, augment=augment)
    teacher_arch = opt.teacher or "cifar_resnet20"
    teacher_src = model_source(teacher_arch, "teacher", opt.teacher_kwargs, opt.teacher_output)
    student_src = None if opt.student == "auto" else model_source(opt.student, "student", opt.student_kwargs,
                                                                     opt.student_output)
    check_source_options(opt, teacher_src, student_src)
    loss = loss_options(opt)
    accuracy = {"max_drop_points": opt.max_drop if opt.max_drop is not None else target.accuracy.max_drop_points,
                "floor": opt.accuracy_floor if opt.accuracy_floor is not None else target.accuracy.floor}
    auto = opt.student == "auto"
    # one QAD schedule for both quantizers (NNCF's qad and the PT2E routes' qad_pt2e)
    qad_train = dict(common, epochs=opt.qad_epochs, lr=opt.qad_lr, bn="frozen", schedule="cosine", weight_decay=0.0)
    pt2e = pt2e_specs(target, loss, qad_train)
    specs = [
        StageSpec("teacher", config_of(
            "teacher", arch=teacher_arch, **source_config(teacher_src), weights=opt.teacher_weights,
            weights_sha256=file_sha256(opt.teacher_weights, "--teacher-weights"), pretrained=opt.pretrained,
            source_classes=opt.source_classes, sync_bn=opt.sync_bn,
            # training options only when the teacher is trained here, so they never rerun a loaded teacher
            train=None if opt.teacher_weights or opt.pretrained else dict(common, epochs=opt.teacher_epochs,
                                                                           lr=opt.lr))),
        StageSpec("finetune", config_of(
            "finetune", transfer=opt.transfer, probe_epochs=opt.probe_epochs, label_smoothing=opt.label_smoothing,
            sync_bn=opt.sync_bn, **backbone_lr_mult(opt),
            train=dict(common, epochs=opt.finetune_epochs, lr=opt.finetune_lr)), {"teacher": "teacher"}),
    ]
    if auto:
        from edgekd.search.budget import search_config

        specs.append(StageSpec("search", config_of("search", **search_config(opt, target, loss, common)),
                               {"teacher": "finetune"}))
    specs += [
        StageSpec("distill", config_of(
            "distill", student=opt.student, **source_config(student_src), student_weights=opt.student_weights,
            student_weights_sha256=file_sha256(opt.student_weights, "--student-weights"), loss=loss,
            **({"student_input_size": opt.student_input_size} if opt.student_input_size else {}),
            cache_teacher=opt.cache_teacher, sync_bn=opt.sync_bn,
            train=dict(common, epochs=opt.distill_epochs, lr=opt.lr, trainable=opt.train_only,
                       max_update_norm=opt.max_update_norm)),
            {"teacher": "finetune", "search": "search"} if auto else {"teacher": "finetune"}),
        StageSpec("qad", config_of(
            "qad", loss=loss, calib_size=opt.calib_size, preset=quant_preset(target), calib=opt.calib,
            calib_sha256=file_sha256(opt.calib, "--calib"), ignored_layers=opt.ignore_layers,
            accuracy=accuracy, max_fallback_layers=opt.max_fallback_layers,
            fallback_budget_min=opt.fallback_budget,
            train=qad_train),
            {"teacher": "finetune", "student": "distill"}),
        *pt2e,
        StageSpec("export", config_of("export", opset=opt.opset),
                  {"teacher": "finetune", "student": "distill", "quantized": "qad"}),
        StageSpec("compile", config_of("compile", target=target.model_dump(mode="json")),
                  compile_parents(target, pt2e)),
        StageSpec("bench", config_of("bench", target=target.model_dump(mode="json"), accuracy=accuracy,
                                     eval_set_size=opt.eval_set_size),
                  {"compile": "compile", "export": "export", "qad": "qad", "distill": "distill",
                   "finetune": "finetune"}),
    ]
    return specs
