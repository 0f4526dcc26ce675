"""Read intermediate tensors of a model through forward hooks keyed by module path (torchdistill style).

Neither the student's nor the teacher's code changes for distillation: a :class:`FeatureTaps` registers a
forward hook on each requested module (named by its dotted path, exactly as in ``model.named_modules()``)
and keeps the latest output of each in ``.outputs``::

    with FeatureTaps(student, ["layer2", "layer3"], "cifar_resnet20") as taps:
        logits = student(x)
        feats = taps.outputs            # {"layer2": Tensor, "layer3": Tensor}

Notes
-----
* The stored tensor is the module's output itself (not a copy), so gradients flow through it. Do not tap
  a module whose output a later module modifies in place (``nn.ReLU(inplace=True)`` right after a conv):
  tap the ReLU, or the enclosing block, instead.
* A module that returns a tuple or list is recorded by its first tensor.
* ``.outputs`` is emptied at the start of every forward of the root model, so a layer that was skipped
  in this forward never leaves a stale tensor behind.
* A model wrapped in DistributedDataParallel has its paths prefixed by ``module.``; tap the inner model.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import torch
from torch import Tensor, nn

from edgekd.errors import UsageError

#: The command a user runs to list every layer path of a model; named in the unknown-layer error.
INSPECT_COMMAND = "edgekd models --layers"
_MAX_SUGGESTIONS = 5


def layer_names(model: nn.Module) -> list[str]:
    """Every tappable module path of `model`, in registration order (the root itself excluded)."""
    return [name for name, _ in model.named_modules() if name]


def _nearest(path: str, names: list[str]) -> list[str]:
    close = difflib.get_close_matches(path, names, n=_MAX_SUGGESTIONS, cutoff=0.5)
    if len(close) < _MAX_SUGGESTIONS:
        more = difflib.get_close_matches(path, names, n=_MAX_SUGGESTIONS, cutoff=0.0)
        close += [n for n in more if n not in close][: _MAX_SUGGESTIONS - len(close)]
    return close


def validate_paths(model: nn.Module, paths: Iterable[str], model_name: str) -> None:
    """Raise a UsageError naming the nearest valid layers when a path is not a module of `model`."""
    modules = dict(model.named_modules())
    for path in paths:
        if path and path in modules:
            continue
        names = layer_names(model)
        nearest = ", ".join(_nearest(path, names)) or "(the model has no sub-modules)"
        raise UsageError(
            f"layer '{path}' not found in {model_name}; nearest: {nearest} "
            f"(all: {INSPECT_COMMAND} {model_name})"
        )


def _first_tensor(output: Any) -> Tensor | None:
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, Tensor):
                return item
    return None


class FeatureTaps:
    """Forward hooks on `paths` of `model`; ``.outputs[path]`` is that module's latest output.

    Use as a context manager (hooks removed on exit) or keep the object and call :meth:`close` when done.
    Paths are checked on construction (UsageError with the nearest names); duplicates are tapped once.
    """

    def __init__(self, model: nn.Module, paths: Iterable[str], model_name: str | None = None) -> None:
        self.model_name = model_name or type(model).__name__
        self.paths: list[str] = list(dict.fromkeys(paths))
        validate_paths(model, self.paths, self.model_name)
        self.outputs: dict[str, Tensor] = {}
        self._handles: list[Any] = []
        if not self.paths:
            return
        modules = dict(model.named_modules())
        self._handles.append(model.register_forward_pre_hook(self._clear_hook))
        for path in self.paths:
            self._handles.append(modules[path].register_forward_hook(self._make_hook(path)))

    def _clear_hook(self, module: nn.Module, args: Any) -> None:
        self.outputs.clear()

    def _make_hook(self, path: str):  # noqa: ANN202 - a torch hook closure
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            tensor = _first_tensor(output)
            if tensor is None:
                raise UsageError(
                    f"layer '{path}' of {self.model_name} returns {type(output).__name__}, not a tensor: "
                    f"choose a layer whose output is a feature map"
                )
            self.outputs[path] = tensor

        return hook

    def clear(self) -> None:
        """Forget the recorded outputs (they are also forgotten at the start of each root forward)."""
        self.outputs.clear()

    def close(self) -> None:
        """Remove every hook; safe to call twice. The last outputs stay readable until :meth:`clear`."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @property
    def active(self) -> bool:
        return bool(self._handles)

    def __enter__(self) -> FeatureTaps:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort when the caller forgets close()
        try:
            self.close()
        except Exception:
            pass


def module_device(model: nn.Module, fallback: torch.device) -> torch.device:
    """The device of the model's first parameter (or buffer); `fallback` for a model with neither."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return fallback


@torch.no_grad()
def probe_shapes(
    model: nn.Module, paths: list[str], example_input: Tensor, model_name: str
) -> tuple[tuple[int, ...] | None, dict[str, tuple[int, ...]]]:
    """One eval-mode, no-grad forward: (logits shape or None, {path: output shape}).

    Each module's train/eval flag is restored afterwards, so BatchNorm statistics are untouched. (Observers
    of a fake-quantised model that are enabled in eval mode do see this one batch.)
    """
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with FeatureTaps(model, paths, model_name) as taps:
            out = model(example_input.to(module_device(model, example_input.device)))
            shapes = {p: tuple(t.shape) for p, t in taps.outputs.items()}
    finally:
        for module, flag in flags.items():
            module.training = flag
    missing = [p for p in paths if p not in shapes]
    if missing:
        raise UsageError(
            f"layer '{missing[0]}' of {model_name} did not run in a forward pass: choose a layer on the "
            f"path from input to logits"
        )
    logits = _first_tensor(out)
    return (tuple(logits.shape) if logits is not None else None), shapes
