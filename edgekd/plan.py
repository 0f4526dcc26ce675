"""From options to stages: the single path that both CLI flags and a YAML pipeline file go through."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgekd.configio import first_error, read_yaml_mapping
from edgekd.errors import UsageError
from edgekd.fsio import sha256_file
from edgekd.paths import require_file
from edgekd.pipeline import StageSpec
from edgekd.targets import TargetProfile

Transfer = Literal["feature", "full", "hybrid", "staged", "none"]
Weighting = Literal["uniform", "teacher_confidence", "teacher_loss"]


class CompressOptions(BaseModel):
    """Every option of `edgekd compress`; a YAML pipeline file holds the same fields."""

    model_config = ConfigDict(extra="forbid")

    target: str = "intel-cpu"
    data: str = "digits"
    split_seed: int = 0
    val_fraction: float = Field(default=0.1, gt=0, lt=1)  # of train/ (or of a single tree) when val is carved
    test_fraction: float = Field(default=0.2, gt=0, lt=1)  # of a single tree (or the digits)
    max_train_per_class: int | None = Field(default=None, ge=1)
    max_val_per_class: int | None = Field(default=None, ge=1)
    max_test_per_class: int | None = Field(default=None, ge=1)
    teacher: str | None = None
    teacher_weights: str | None = None
    pretrained: bool = False
    source_classes: int | None = None
    student: str = "small_cnn"
    student_weights: str | None = None
    transfer: Transfer = "hybrid"
    teacher_epochs: int = Field(default=6, ge=0)
    finetune_epochs: int = Field(default=6, ge=0)
    probe_epochs: int = Field(default=1, ge=0)
    distill_epochs: int = Field(default=10, ge=0)
    qad_epochs: int = Field(default=2, ge=0)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=0.05, gt=0)
    finetune_lr: float = Field(default=0.05, gt=0)
    qad_lr: float = Field(default=0.002, gt=0)
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    temperature: float = 4.0
    alpha: float = 0.9
    attention: list[str] = Field(default_factory=list)  # "student_layer:teacher_layer"
    attention_weight: float = 1000.0
    hint: list[str] = Field(default_factory=list)
    hint_weight: float = 1.0
    weighting: Weighting = "uniform"
    train_only: list[str] | None = None  # distill: parameter-name patterns that train
    max_update_norm: float | None = None
    augment: Literal["none", "crop", "crop_flip", "rrc_flip"] | None = None  # None: edgekd.data.sizing.default_augment
    input_size: tuple[int, int] | None = None  # --input-size N|HxW; None: target, teacher weights, then data
    strict_data: bool = False  # unreadable image files: an error instead of skipped with a warning
    cache_teacher: bool = True
    calib: str | None = None
    calib_size: int = Field(default=300, ge=1)
    ignore_layers: list[str] = Field(default_factory=list)
    max_drop: float | None = Field(default=None, ge=0)  # top-1 points below the fine-tuned teacher
    accuracy_floor: float | None = Field(default=None, ge=0, le=1)
    max_fallback_layers: int = Field(default=3, ge=0)
    fallback_budget: float = Field(default=10.0, ge=0)  # minutes for the float-layer fallback search; 0: none
    opset: int = Field(default=17, ge=17)
    seed: int = 0
    threads: int | None = Field(default=None, ge=1)  # torch intra-op threads for training (not part of stage ids)
    sync_bn: bool = False


    @field_validator("input_size", mode="before")
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
        raise UsageError(first_error(exc, unknown="unknown option").replace("field '", "option '")) from None
    check_epochs(opts)
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
        "attention": {"pairs": _pairs(opt.attention, "--attention"), "weight": opt.attention_weight},
        "hint": {"pairs": _pairs(opt.hint, "--hint"), "weight": opt.hint_weight},
        "weighting": {"score": opt.weighting},
        "label_smoothing": opt.label_smoothing,
    }


def quant_preset(target: TargetProfile) -> str:
    """TensorRT's explicit quantization wants symmetric signed activations ('trt'); ONNX Runtime and
    OpenVINO run real INT8 kernels on NNCF's mixed preset (unsigned activations after ReLU)."""
    return "trt" if target.runtime.name == "tensorrt" or target.runtime.device == "TensorRT" else "mixed"


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


def build_specs(opt: CompressOptions, target: TargetProfile, channels: int,
                input_size: tuple[int, int] = (32, 32)) -> list[StageSpec]:
    """The stage list for `compress`. Imports stage configs (torch) lazily through the pipeline."""
    from edgekd.data.sizing import default_augment
    from edgekd.pipeline import config_of

    augment = opt.augment or default_augment(channels, tuple(input_size))
    common = dict(batch_size=opt.batch_size, seed=opt.seed, augment=augment)
    teacher_arch = opt.teacher or "cifar_resnet20"
    loss = loss_options(opt)
    accuracy = {"max_drop_points": opt.max_drop if opt.max_drop is not None else target.accuracy.max_drop_points,
                "floor": opt.accuracy_floor if opt.accuracy_floor is not None else target.accuracy.floor}
    specs = [
        StageSpec("teacher", config_of(
            "teacher", arch=teacher_arch, weights=opt.teacher_weights,
            weights_sha256=file_sha256(opt.teacher_weights, "--teacher-weights"), pretrained=opt.pretrained,
            source_classes=opt.source_classes, sync_bn=opt.sync_bn,
            # training options only when the teacher is trained here, so they never rerun a loaded teacher
            train=None if opt.teacher_weights or opt.pretrained else dict(common, epochs=opt.teacher_epochs,
                                                                           lr=opt.lr))),
        StageSpec("finetune", config_of(
            "finetune", transfer=opt.transfer, probe_epochs=opt.probe_epochs, label_smoothing=opt.label_smoothing,
            sync_bn=opt.sync_bn,
            train=dict(common, epochs=opt.finetune_epochs, lr=opt.finetune_lr)), {"teacher": "teacher"}),
        StageSpec("distill", config_of(
            "distill", student=opt.student, student_weights=opt.student_weights,
            student_weights_sha256=file_sha256(opt.student_weights, "--student-weights"), loss=loss,
            cache_teacher=opt.cache_teacher, sync_bn=opt.sync_bn,
            train=dict(common, epochs=opt.distill_epochs, lr=opt.lr, trainable=opt.train_only,
                       max_update_norm=opt.max_update_norm)), {"teacher": "finetune"}),
        StageSpec("qad", config_of(
            "qad", loss=loss, calib_size=opt.calib_size, preset=quant_preset(target), calib=opt.calib,
            calib_sha256=file_sha256(opt.calib, "--calib"), ignored_layers=opt.ignore_layers,
            accuracy=accuracy, max_fallback_layers=opt.max_fallback_layers,
            fallback_budget_min=opt.fallback_budget,
            train=dict(common, epochs=opt.qad_epochs, lr=opt.qad_lr, bn="frozen", schedule="cosine",
                       weight_decay=0.0)),
            {"teacher": "finetune", "student": "distill"}),
        *pt2e_specs(target, loss, dict(common, epochs=opt.qad_epochs, lr=opt.qad_lr, bn="frozen", schedule="cosine",
                                       weight_decay=0.0)),
        StageSpec("export", config_of("export", opset=opt.opset),
                  {"teacher": "finetune", "student": "distill", "quantized": "qad"}),
        StageSpec("compile", config_of("compile", target=target.model_dump(mode="json")), {"export": "export"}),
        StageSpec("bench", config_of("bench", target=target.model_dump(mode="json"), accuracy=accuracy),
                  {"compile": "compile", "export": "export", "qad": "qad", "distill": "distill",
                   "finetune": "finetune"}),
    ]
    return specs
