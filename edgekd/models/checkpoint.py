"""Reading and writing weights safely.

Every file is read with `torch.load(map_location="cpu", weights_only=True)`: a checkpoint that pickles
arbitrary objects is refused, never executed. Accepted layouts: a plain state_dict, or a dict holding one
under `state_dict`, `model` or `model_state_dict`; a leading `module.` (DataParallel/DDP) or `_orig_mod.`
(torch.compile) prefix is stripped.

edgekd's own checkpoint (`edgekd-checkpoint/1`) also records the architecture, so it can be rebuilt:
{"format", "arch", "arch_kwargs": {num_classes, in_channels[, input_size]}, "state_dict", **extra}.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.errors import UsageError
from edgekd.paths import require_file

FORMAT = "edgekd-checkpoint/1"
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict")
STRIP_PREFIXES = ("module.", "_orig_mod.")
ARCH_KWARGS = ("num_classes", "in_channels", "input_size")
_RESERVED = ("format", "arch", "arch_kwargs", "state_dict")
# how a model source (edgekd.models.sources) is rebuilt, and its name in reports
SOURCE_KEYS = ("source_kwargs", "source_output", "source_label")


def source_extra(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint fields that rebuild a model source, to carry into a checkpoint derived from it."""
    return {k: meta[k] for k in SOURCE_KEYS if meta.get(k)}
_SHOW = 3


@dataclass(frozen=True)
class LoadReport:
    """What load_weights did: keys it tolerated (strict=False or skip_head) and head keys left as built."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped_head: list[str] = field(default_factory=list)


def _torch_load(path: str | os.PathLike[str]) -> Any:
    p = Path(path)
    require_file(p, "checkpoint", "a .pt/.pth file")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        # torch's reason follows "WeightsUnpickler error:" (same line or the next), e.g. "Unsupported operand 80"
        after = str(exc).split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
        first = after[0] if after and "WeightsUnpickler error:" in str(exc) else (lines[0] if lines else
                                                                                  type(exc).__name__)
        if "Unsupported global" in str(exc):  # a real pickle naming classes: objects, not only tensors
            raise UsageError(
                f"checkpoint {p} holds pickled Python objects, not only tensors and plain types; edgekd "
                "loads weights with weights_only=True and refuses it: re-save it as "
                "torch.save(model.state_dict(), path)"
            ) from None
        raise UsageError(f"{p} is not a readable PyTorch checkpoint (damaged, or not a checkpoint: "
                         f"{first[:120]})") from None
    except Exception as exc:  # torch raises KeyError, RuntimeError, EOFError... on non-checkpoints
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"{p} is not a readable PyTorch checkpoint ({first[:160]})") from None


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) for k in obj)
        and all(isinstance(v, torch.Tensor) or k.endswith("_extra_state") for k, v in obj.items())
    )


def strip_prefixes(state: Mapping[str, Any]) -> dict[str, Any]:
    """Drop a `module.` / `_orig_mod.` prefix (repeatedly) when every key carries it."""
    out = dict(state)
    changed = True
    while changed and out:
        changed = False
        for prefix in STRIP_PREFIXES:
            if all(k.startswith(prefix) for k in out):
                out = {k[len(prefix) :]: v for k, v in out.items()}
                changed = True
    return out


def _extract_state_dict(obj: Any, label: str) -> dict[str, torch.Tensor]:
    if _is_state_dict(obj):
        return strip_prefixes(obj)
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if _is_state_dict(obj.get(key)):
                return strip_prefixes(obj[key])
        keys = ", ".join(map(str, list(obj)[:6])) or "none"
        raise UsageError(
            f"{label} holds no state_dict (top-level keys: {keys}); expected a state_dict or a dict "
            f"with one under {', '.join(STATE_DICT_KEYS)}"
        )
    raise UsageError(f"{label} holds a {type(obj).__name__}, not a state_dict of tensors")


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The state_dict in `path` (plain, or under state_dict/model/model_state_dict), prefixes stripped."""
    return _extract_state_dict(_torch_load(path), f"checkpoint {path}")


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    return shown + (", ..." if len(keys) > _SHOW else "")


def load_weights(
    model: nn.Module,
    path_or_state: str | os.PathLike[str] | Mapping[str, torch.Tensor],
    strict: bool = True,
    skip_head: bool = False,
    *,
    arch: str | None = None,
) -> LoadReport:
    """Load weights into `model` in place, or raise one UsageError naming what does not fit.

    strict=True: every model key must be in the checkpoint and vice versa. Shapes must always agree.
    skip_head=True: the classifier head (see heads.find_head) is not loaded and may be missing, extra or
    of another shape in the checkpoint (a different class count); the model keeps its own head.
    `arch` only names the model in messages.
    """
    from edgekd.models.heads import head_parameter_names

    if isinstance(path_or_state, Mapping):
        label = "the given state_dict"
        state = _extract_state_dict(path_or_state, label)
    else:
        label = f"checkpoint {path_or_state}"
        state = read_state_dict(path_or_state)
    own = model.state_dict()
    head = set(head_parameter_names(model)) if skip_head else set()
    skipped = sorted(k for k in state if k in head)
    # like torch, tolerate checkpoints saved before BatchNorm had num_batches_tracked
    missing = [
        k for k in own if k not in state and k not in head and not k.endswith(".num_batches_tracked")
    ]
    unexpected = [k for k in state if k not in own and k not in head]
    mismatched = [
        k
        for k, v in state.items()
        if k in own and k not in head and isinstance(v, torch.Tensor) and v.shape != own[k].shape
    ]
    problems = []
    if strict and missing:
        problems.append(f"missing {len(missing)} keys ({_names(missing)})")
    if strict and unexpected:
        problems.append(f"unexpected {len(unexpected)} keys ({_names(unexpected)})")
    if mismatched:
        shapes = ", ".join(
            f"{k}: checkpoint {list(state[k].shape)} vs model {list(own[k].shape)}"
            for k in mismatched[:_SHOW]
        )
        more = ", ..." if len(mismatched) > _SHOW else ""
        problems.append(f"{len(mismatched)} shape mismatches ({shapes}{more})")
    if problems:
        name = arch or type(model).__name__
        hint = ""
        if not skip_head:
            try:
                head_keys = set(head_parameter_names(model))
            except UsageError:
                head_keys = set()
            if mismatched and set(mismatched) <= head_keys:
                hint = "; only the classifier head differs (another class count?): load with skip_head"
        raise UsageError(f"{label} does not fit model {name}: {', '.join(problems)}{hint}")
    model.load_state_dict({k: v for k, v in state.items() if k in own and k not in head}, strict=False)
    return LoadReport(missing=missing, unexpected=unexpected, skipped_head=skipped)


def _check_plain(value: Any, where: str) -> None:
    """Only what torch.load(weights_only=True) reads back: tensors, numbers, str, None, containers."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"checkpoint field {where} has a key of type {type(k).__name__}")
            _check_plain(item, f"{where}.{k}")
        return
    raise TypeError(
        f"checkpoint field {where} is a {type(value).__name__}; only tensors, numbers, str, None, "
        "lists, tuples and dicts load with weights_only=True"
    )


def save_edgekd_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    arch: str,
    arch_kwargs: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write an edgekd checkpoint atomically (temp file, then rename); returns the path.

    `arch` must be a name build_model knows (UsageError otherwise), so the file can be rebuilt.
    """
    from edgekd.models.registry import model_family

    model_family(arch)
    kwargs = dict(arch_kwargs)
    unknown = sorted(set(kwargs) - set(ARCH_KWARGS))
    if unknown or "num_classes" not in kwargs or "in_channels" not in kwargs:
        raise ValueError(
            f"arch_kwargs needs num_classes and in_channels and may add input_size; got {sorted(kwargs)}"
        )
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(_RESERVED))
    if clash:
        raise ValueError(f"extra may not use the reserved keys {clash}")
    _check_plain(kwargs, "arch_kwargs")
    _check_plain(extra, "extra")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "arch": arch, "arch_kwargs": kwargs, "state_dict": state, **extra}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_torch_atomic(payload, out)
    return out


def save_torch_atomic(payload: Any, out: Path) -> None:
    """torch.save to a temporary file, then a durable rename (edgekd.fsio). Saved through a file object, so
    the archive's inner folder is always `archive/`: saved to a path, torch names it after the (temporary,
    random) file name, and the same weights would get other bytes on every run."""
    from edgekd.fsio import publish, tmp_name

    tmp = tmp_name(out)
    try:
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)
        publish(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def load_edgekd_checkpoint(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model an edgekd checkpoint records (via build_model) and load its weights strictly.

    Returns (model, meta): meta is every field but the state_dict (format, arch, arch_kwargs, extra...).
    """
    from edgekd.models.registry import build_model

    raw = _torch_load(path)
    if not isinstance(raw, Mapping) or "arch" not in raw or "format" not in raw:
        raise UsageError(
            f"checkpoint {path} does not record its architecture (not written by edgekd): pass "
            "--teacher ARCH --teacher-weights PATH"
        )
    if raw["format"] != FORMAT:
        raise UsageError(
            f"checkpoint {path} has format {raw['format']!r}; this edgekd reads {FORMAT!r}: upgrade edgekd"
        )
    kwargs = raw.get("arch_kwargs")
    if not isinstance(kwargs, Mapping) or set(kwargs) - set(ARCH_KWARGS) or "num_classes" not in kwargs:
        raise UsageError(f"checkpoint {path} has malformed arch_kwargs {kwargs!r}: re-save it with edgekd")
    model = build_model(str(raw["arch"]), pretrained=False, source_kwargs=raw.get("source_kwargs") or None,
                        source_output=raw.get("source_output"), **dict(kwargs))
    if not raw.get("state_dict") and not model.state_dict():  # an ONNX teacher: its weights are in its file
        return model, {k: v for k, v in raw.items() if k != "state_dict"}
    if raw.get("dropped_blocks"):  # a depth-pruned model (edgekd.search.depth): residual blocks removed
        from edgekd.models.reshape import apply_dropped_blocks

        apply_dropped_blocks(model, list(raw["dropped_blocks"]))
    if raw.get("pruned_from"):  # a channel-pruned model (edgekd.search.prune): same graph, fewer channels
        from edgekd.models.reshape import reshape_to_state_dict

        reshape_to_state_dict(model, raw.get("state_dict") or {})
    load_weights(model, raw.get("state_dict") or {}, strict=True, arch=str(raw["arch"]))
    meta = {k: v for k, v in raw.items() if k != "state_dict"}
    return model, meta
