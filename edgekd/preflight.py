"""Checks that run before any stage writes: names, checkpoints and layer paths that would fail later.

Every failure here is a one-line UsageError (exit 2) and leaves the run directory untouched.
"""

from __future__ import annotations

from pathlib import Path

from edgekd.errors import UsageError
from edgekd.plan import CompressOptions


def _check_brought(model, spec: str, flag: str, channels: int, input_size: int) -> None:
    """A model the user brought must return (batch, classes) logits on the run's input (one batch of zeros)."""
    from edgekd.models import registry, sources

    if registry.is_registered(spec) or getattr(model, "edgekd_onnx", False):
        return
    import torch

    sources.check_logits(model.eval(), torch.zeros(2, channels, input_size, input_size), spec, flag)


def _check_class_names(path: Path, class_names: list[str] | None) -> None:
    from edgekd.paths import require_file

    require_file(path, "--teacher-classes", "a text file with one class name per line")
    names = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if class_names is not None and names != list(class_names):
        diff = next((f"line {i + 1}: '{a}' vs the data's '{b}'" for i, (a, b) in enumerate(zip(names, class_names))
                     if a != b), f"{len(names)} names vs the data's {len(class_names)}")
        raise UsageError(f"--teacher-classes {path.name} does not match the data's classes in order ({diff}): the "
                         "ONNX teacher's outputs would be read as the wrong classes")


def preflight(opts: CompressOptions, num_classes: int, channels: int, input_size: int,
              class_names: list[str] | None = None) -> None:
    from edgekd.models.checkpoint import load_weights, read_state_dict
    from edgekd.models.heads import find_head
    from edgekd.models.registry import build_model

    if opts.source_classes is not None and not opts.teacher_weights and not opts.pretrained \
            and not 2 <= opts.source_classes <= num_classes:
        raise UsageError(f"source_classes (from the --config file) must be between 2 and {num_classes}, the "
                         f"number of classes in the data; got {opts.source_classes}")
    for key in ("mean", "std"):
        given = getattr(opts, key)
        if given and len(given) != channels:
            raise UsageError(f"--{key} has {len(given)} values and the images have {channels} channels: give one "
                             "per channel")
    kwargs = {"in_channels": channels, "input_size": input_size}
    teacher_arch = opts.teacher or "cifar_resnet20"
    teacher = build_model(teacher_arch, num_classes=num_classes, **kwargs, source_kwargs=opts.teacher_kwargs or None,
                          source_output=opts.teacher_output)
    _check_brought(teacher, teacher_arch, "--teacher", channels, input_size)
    if opts.teacher_classes:
        _check_class_names(Path(opts.teacher_classes), class_names)
    if opts.teacher_weights:
        state = read_state_dict(Path(opts.teacher_weights))
        head, _ = find_head(teacher)
        weight = state.get(f"{head}.weight")
        if weight is not None and weight.shape[0] != num_classes:
            teacher = build_model(teacher_arch, num_classes=int(weight.shape[0]), **kwargs)
        load_weights(teacher, state, strict=True, arch=teacher_arch)
    if opts.student == "auto":  # the search builds its candidates; auto refuses student-specific options
        return
    student = build_model(opts.student, num_classes=num_classes, **kwargs, source_kwargs=opts.student_kwargs or None,
                          source_output=opts.student_output)
    _check_brought(student, opts.student, "--student", channels, input_size)
    if opts.student_weights:
        load_weights(student, read_state_dict(Path(opts.student_weights)), strict=True, skip_head=True,
                     arch=opts.student)
    if opts.attention or opts.hint:
        import torch

        from edgekd.losses.composite import DistillLoss, DistillLossConfig
        from edgekd.plan import loss_options

        cfg = DistillLossConfig.model_validate(loss_options(opts))
        example = torch.zeros(2, channels, input_size, input_size)
        # validates layer paths on both models and that each pair's spatial sizes can be matched
        DistillLoss(cfg, student, teacher, example, student_name=opts.student, teacher_name=teacher_arch)
