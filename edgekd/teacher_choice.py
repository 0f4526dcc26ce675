"""The teacher of a `compress` run when the user names none: decided once the data is loaded.

- The embedded digits: `cifar_resnet20` trained here on a *source task* (the first half of the classes), then
  transferred to all of them by the finetune stage. Unchanged: it shows a real transfer on data that needs no
  download (DECISIONS.md, "The embedded default must exercise every stage for real").
- A user's folder, nothing given: an ImageNet-pretrained torchvision `resnet18` for RGB photos of at least
  PHOTO_MIN pixels (11.7M parameters, 1.8 GMACs at 224 px, 0.6 at 128 px: fine-tunes on a few hundred
  images per class without tuning, keeps BatchNorm after every conv so NNCF quantizes it cleanly, and is a
  residual network Torch-Pruning and the depth pruning of the student search both handle, so the search's
  pruned-teacher candidates inherit ImageNet features; MobileNetV3-Large is as accurate for fewer MACs but
  its hard-swish and squeeze-excitation layers fine-tune and quantize less predictably on small data), and
  `cifar_resnet20` with its CIFAR-10 weights for smaller or grayscale images. Used when the weights are
  reachable: the file is in torch.hub's checkpoint folder (`$TORCH_HOME/hub/checkpoints`) or the download
  host answers (EDGEKD_OFFLINE=1 never asks it). The data's normalisation stays the folder default (ImageNet
  statistics for RGB, what those weights expect); the data decides the input size.
- Offline (or grayscale / small images whose weights are not reachable): `cifar_resnet20` (0.27M parameters,
  which a few thousand images can train; an 11.7M-parameter ResNet-18 from scratch overfits them) trained
  here from scratch on *all* classes (no source task); the finetune stage is then skipped ("skipped: the
  teacher was trained on this data") unless a transfer option was given. Its epochs suit the data size:
  the default chain's teacher + finetune epochs, raised so that training makes at least MIN_STEPS optimizer
  steps on a small folder, at most MAX_EPOCHS. Photos whose size the data decides are scaled to SCRATCH_SIDE
  pixels on the shorter side for this run (`--input-size` overrides): that network keeps full resolution
  through its first stage, so its cost grows with the pixels; on trashnet5 (1,509 training photos, 128x171)
  its 16 epochs took about 50 minutes on 2 shared cores at 128x171, which alone breaks a 30-minute default
  run (bench/RESULTS.md, "Real photos at the defaults").
- A user's folder with `--teacher ARCH` and no weights: that architecture, trained here on all classes
  (unless `source_classes` is given).
The first line of `compress`'s output says which (`TeacherChoice.line`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from edgekd.plan import CompressOptions

PHOTO_MIN = 64  # RGB images at least this size get the ImageNet teacher (edgekd.data.sizing.PHOTO_MIN)
PHOTO_ARCH = "resnet18"
SMALL_ARCH = "cifar_resnet20"  # the embedded default, small or grayscale images, and the offline teacher
SCRATCH_SIDE = 64  # shorter side (px) the data's size is scaled to for the offline default teacher (module docstring)
MIN_STEPS = 500
MAX_EPOCHS = 60
TRANSFER_FIELDS = ("transfer", "probe_epochs", "backbone_lr_mult", "finetune_epochs", "finetune_lr")


@dataclass(frozen=True)
class TeacherChoice:
    options: CompressOptions  # the run's options with the teacher decided
    line: str | None  # the first line of output; None for the embedded digits


def weights_url(arch: str) -> str | None:
    """Where the published weights of `arch` come from (torchvision's weights enum, or edgekd's CIFAR ResNets)."""
    from edgekd.models import cifar_resnet

    if arch.startswith("cifar_resnet"):
        return cifar_resnet.PRETRAINED_URLS.get(int(arch[len("cifar_resnet"):]))
    import torchvision.models as tvm

    try:
        return tvm.get_model_weights(arch).DEFAULT.url
    except (ValueError, KeyError, AttributeError):
        return None


def cached_weights(url: str) -> Path:
    """The file torch.hub (and edgekd.models.registry) reads for `url` without the network."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def network_answers(url: str, timeout_s: float = 3.0) -> bool:
    """True when a HEAD request for `url` succeeds; never asks when EDGEKD_OFFLINE=1."""
    if os.environ.get("EDGEKD_OFFLINE", "") not in ("", "0"):
        return False
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s) as resp:
            return 200 <= resp.status < 400
    except (OSError, ValueError):
        return False


def reachable(arch: str) -> tuple[bool, str]:
    """Whether the published weights of `arch` can be had, and where from (or why not), in words."""
    url = weights_url(arch)
    if url is None:
        return False, f"{arch} publishes no weights"
    path = cached_weights(url)
    if path.is_file():
        return True, f"found in {path.parent}"
    host = url.split("/")[2]
    if network_answers(url):
        return True, f"downloaded from {host} into {path.parent}"
    return False, f"{path.name} is not in {path.parent} and {host} did not answer"


def teacher_epochs(opts: CompressOptions, n_train: int) -> int:
    """Epochs of a teacher trained here on all classes: the user's `teacher_epochs` when given; else the
    default chain's teacher + finetune epochs, raised to MIN_STEPS optimizer steps, at most MAX_EPOCHS."""
    if "teacher_epochs" in opts.model_fields_set:
        return opts.teacher_epochs
    steps = max(1, math.ceil(n_train / opts.batch_size))
    return max(1, min(MAX_EPOCHS, max(opts.teacher_epochs + opts.finetune_epochs, math.ceil(MIN_STEPS / steps))))


def _all_classes(opts: CompressOptions, arch: str, k: int, n_train: int, why: str) -> TeacherChoice:
    if opts.source_classes is not None and opts.source_classes < k:  # a source task the user asked for
        return TeacherChoice(opts.model_copy(update={"teacher": arch}),
                             f"teacher: {why}: {arch} trained here on a source task of {opts.source_classes} "
                             f"classes (source_classes), then transferred to all {k}")
    epochs = teacher_epochs(opts, n_train)
    update = {"teacher": arch, "source_classes": k, "teacher_epochs": epochs}
    skip = not (set(TRANSFER_FIELDS) & opts.model_fields_set)
    if skip:
        update["transfer"] = "none"
    steps = epochs * math.ceil(n_train / opts.batch_size)
    then = "the finetune stage is skipped" if skip else f"then a {opts.transfer} fine-tune"
    return TeacherChoice(opts.model_copy(update=update),
                         f"teacher: {why}: {arch} trained here from scratch on all {k} classes for {epochs} epochs "
                         f"({steps} steps on {n_train} images); {then}")


def default_arch(opts: CompressOptions, channels: int, input_size: tuple[int, int]) -> str | None:
    """The architecture choose_teacher picks for a user's folder when no teacher is named or loaded; else None."""
    if opts.data == "digits" or opts.teacher_weights or opts.pretrained or opts.teacher:
        return None
    return PHOTO_ARCH if channels == 3 and min(input_size) >= PHOTO_MIN else SMALL_ARCH


def scratch_size_cap(opts: CompressOptions, channels: int, input_size: tuple[int, int],
                     reach: tuple[bool, str] | None) -> int | None:
    """SCRATCH_SIDE when the default teacher of photos will be trained here from scratch (its weights not
    reachable: `reach`, what reachable() said for default_arch's choice); else None. Decided from the folder's
    planned preprocessing, before any image is decoded, so the data is decoded once, at the capped size."""
    if default_arch(opts, channels, input_size) != PHOTO_ARCH or reach is None or reach[0]:
        return None
    return SCRATCH_SIDE


def choose_teacher(opts: CompressOptions, num_classes: int, n_train: int, channels: int,
                   input_size: tuple[int, int], reach: tuple[bool, str] | None = None) -> TeacherChoice:
    """The teacher of this run (module docstring). `reach`: reachable()'s answer for default_arch's choice when
    the caller has asked already (one download check per run)."""
    if opts.data == "digits" or opts.teacher_weights or opts.pretrained:
        return TeacherChoice(opts, None)
    k = num_classes
    if opts.teacher:  # the user's architecture, trained here: on all classes unless they asked for a source task
        return _all_classes(opts, opts.teacher, k, n_train, "no --pretrained or --teacher-weights")
    arch = default_arch(opts, channels, input_size)
    photos = arch == PHOTO_ARCH
    ok, where = reach if reach is not None else reachable(arch)
    what = "ImageNet" if photos else "CIFAR-10"
    h, w = input_size
    if ok:
        return TeacherChoice(
            opts.model_copy(update={"teacher": arch, "pretrained": True}),
            f"teacher: {arch} with its {what} weights ({where}), chosen for {channels}-channel {h}x{w} images; "
            f"the finetune stage transfers it to your {k} classes")
    return _all_classes(opts, SMALL_ARCH, k, n_train, f"offline, no {what} weights for {arch} ({where})")
