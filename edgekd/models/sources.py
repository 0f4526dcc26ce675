"""Model sources: everything `--teacher` / `--student` (and `edgekd.compress(teacher=...)`) accept.

One resolver, tried in this order; each source is recorded in the stage manifest and the model card as what
it is (`ModelSource.describe`):

1. a registry name (`cifar_resnet56`, torchvision names, `timm:<name>`: edgekd.models.registry);
2. an import path `package.module:factory` or `path/to/file.py:factory`: a function or class that returns an
   `nn.Module`, called with the user's keyword arguments (`--teacher-kwargs`). This **runs the user's
   code**, as any Python tool that takes a model does; a checkpoint is never unpickled into a module;
3. a `torch.export` archive (`.pt2`): no user code and no pickle. It trains where a stage trains it: the
   exported graph is switched between train and eval mode with torchao's PT2E helpers (BatchNorm and dropout
   flags in the graph), its linear layers become `nn.Linear` modules so the head can be found and replaced;
4. an ONNX file (`.onnx`), **teacher only**: run through ONNX Runtime, it gives logits for distillation; it
   has no layers to hook (no hints or attention), cannot be fine-tuned or pruned, and its classes must match
   the data;
5. in Python only, an `nn.Module` object (`edgekd.compress(teacher=model)`): registered in this process
   under `module:<sha>`, whose identity is the hash of its class's qualified name and its state_dict.

The factory's model is taken as the user built it (their weights, or `--teacher-weights` on top); edgekd
adapts the classifier head to the data's class count (heads.replace_head) and the stem to its channels.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from edgekd.errors import UsageError

SourceKind = Literal["registry", "import", "export", "onnx", "module"]
MODULE_PREFIX = "module:"
_IN_MEMORY: dict[str, nn.Module] = {}


@dataclass(frozen=True)
class ModelSource:
    """A resolved model source. `location` is what rebuilds it in this process (an absolute file path, a
    module path, the in-memory key); `sha256` is its content: the file, or the factory's source file."""

    kind: SourceKind
    spec: str
    location: str
    sha256: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    output: str | None = None  # which output is the logits when forward returns a tuple, list or dict

    @property
    def rebuild_spec(self) -> str:
        """What rebuilds this source in a later stage of the run: absolute for files, the spec otherwise."""
        return self.location if self.kind in ("export", "onnx") or self.location.split(":")[0].endswith(".py") \
            else self.spec

    def describe(self) -> str:
        what = {"registry": "registry model", "import": "Python factory (user code)",
                "export": "torch.export program", "onnx": "ONNX model run by ONNX Runtime (teacher only)",
                "module": "in-memory nn.Module"}[self.kind]
        if self.kind == "module" and self.location in _IN_MEMORY:
            cls = type(_IN_MEMORY[self.location])
            what += f" {cls.__module__}.{cls.__qualname__} (identity: class name + state_dict hash),"
        args = f" with {self.kwargs}" if self.kwargs else ""
        args += f", output {self.output!r}" if self.output is not None else ""
        digest = f", sha256 {self.sha256[:12]}" if self.sha256 else ""
        return f"{what} {self.spec}{args}{digest}"

    @property
    def label(self) -> str:
        """A short name for tables: the file's name, the import path as given, or the module's class."""
        if self.kind in ("export", "onnx"):
            return Path(self.location).name
        if self.kind == "module" and self.location in _IN_MEMORY:
            return f"{type(_IN_MEMORY[self.location]).__qualname__} ({self.spec})"
        mod, _, attr = self.spec.rpartition(":")
        return f"{Path(mod).name}:{attr}" if mod.endswith(".py") else self.spec

    def checkpoint_extra(self) -> dict[str, Any]:
        """What a checkpoint of this model records to rebuild it (edgekd.models.checkpoint.SOURCE_KEYS)."""
        return {k: v for k, v in (("source_kwargs", self.kwargs), ("source_output", self.output),
                                  ("source_label", self.label)) if v}

    def facts(self) -> dict[str, Any]:
        return {"kind": self.kind, "spec": self.spec, "sha256": self.sha256, "kwargs": self.kwargs,
                "output": self.output, "description": self.describe()}


def _sha256(path: Path) -> str:
    """The file's sha256, hashed once per process for a given size and modification time: every later stage
    that rebuilds the model resolves its source again, and an ONNX teacher can be hundreds of MB."""
    st = path.stat()
    return _sha256_of(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_of(path: str, _size: int, _mtime_ns: int) -> str:
    from edgekd.fsio import sha256_file

    return sha256_file(Path(path))


def _is_import_path(spec: str) -> bool:
    if spec.count(":") != 1 or spec.startswith("timm:"):
        return False
    mod, attr = spec.split(":")
    return bool(mod) and attr.isidentifier()


def register_module(model: nn.Module) -> str:
    """Keep `model` (a copy) for this process; returns its source name `module:<sha>`: sha256 of the class's
    qualified name and the state_dict's names, shapes and bytes, so the same weights give the same stage ids."""
    if not isinstance(model, nn.Module):
        raise UsageError(f"the model must be a torch.nn.Module, got {type(model).__name__}")
    h = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    key = f"{MODULE_PREFIX}{h.hexdigest()[:16]}"
    _IN_MEMORY.setdefault(key, copy.deepcopy(model).cpu())
    return key


def resolve(spec: str, *, role: str = "teacher", kwargs: dict[str, Any] | None = None,
            output: str | None = None) -> ModelSource:
    """The source `spec` names (see the module docstring), or one UsageError saying what to pass instead."""
    import dataclasses

    source = _resolve(spec, role, dict(kwargs or {}))
    if output is not None:
        if source.kind in ("registry", "onnx"):
            raise UsageError(f"--{role}-output applies to a model whose forward returns a tuple or dict (an import "
                             f"path, a .pt2 or an nn.Module), not to {spec}")
        source = dataclasses.replace(source, output=output)
    return source


def _resolve(spec: str, role: str, kwargs: dict[str, Any]) -> ModelSource:
    from edgekd.models import registry

    flag = f"--{role}"
    if spec.startswith(MODULE_PREFIX):
        if spec not in _IN_MEMORY:
            raise UsageError(f"{flag} {spec}: no such in-memory model in this process (pass the nn.Module itself "
                             "to edgekd.compress)")
        return ModelSource("module", spec, spec, spec[len(MODULE_PREFIX):])
    if registry.is_registered(spec):
        if kwargs:
            raise UsageError(f"{flag}-kwargs applies to an import path (pkg.module:factory), not to the registry "
                             f"model {spec}")
        return ModelSource("registry", spec, spec)
    suffix = Path(spec).suffix.lower()
    if suffix in (".pt2", ".onnx"):
        path = Path(spec).expanduser()
        from edgekd.paths import require_file

        require_file(path, f"{flag} {spec}", "a .pt2 (torch.export) or .onnx file")
        if kwargs:
            raise UsageError(f"{flag}-kwargs applies to an import path (pkg.module:factory), not to {path.name}")
        if suffix == ".onnx" and role != "teacher":
            raise UsageError(f"{flag} {spec}: an ONNX model can be the teacher only (it gives logits through ONNX "
                             "Runtime and cannot be trained here); pass a PyTorch student")
        return ModelSource("export" if suffix == ".pt2" else "onnx", spec, str(path.resolve()), _sha256(path))
    if _is_import_path(spec):
        mod, attr = spec.split(":")
        if mod.endswith(".py"):
            file = Path(mod).expanduser()
            from edgekd.paths import require_file

            require_file(file, f"{flag} {spec}", "a Python file")
            return ModelSource("import", spec, f"{file.resolve()}:{attr}", _sha256(file), kwargs)
        try:
            found = importlib.util.find_spec(mod)
        except (ImportError, ValueError) as exc:
            raise UsageError(f"{flag} {spec}: cannot find module '{mod}' ({exc}); is it installed or on "
                             "PYTHONPATH? A file can be named as path/to/file.py:factory") from None
        if found is None:
            raise UsageError(f"{flag} {spec}: no module named '{mod}' (is it installed or on PYTHONPATH? a file "
                             "can be named as path/to/file.py:factory)")
        origin = Path(found.origin) if found.origin and found.origin not in ("built-in", "frozen") else None
        return ModelSource("import", spec, spec, _sha256(origin) if origin and origin.is_file() else None, kwargs)
    raise registry.unknown_model(spec, extra="; or a model source: pkg.module:factory, file.py:factory, "
                                 "model.pt2" + (", model.onnx" if role == "teacher" else ""))


def _load_factory(location: str, spec: str) -> Any:
    mod_name, attr = location.rsplit(":", 1)
    try:
        if mod_name.endswith(".py"):
            file = Path(mod_name)
            name = f"edgekd_user_{hashlib.sha256(str(file).encode()).hexdigest()[:12]}_{file.stem}"
            module = sys.modules.get(name)
            if module is None:
                loader_spec = importlib.util.spec_from_file_location(name, file)
                module = importlib.util.module_from_spec(loader_spec)
                sys.modules[name] = module  # dataclasses and pickling inside the user's module look it up
                try:
                    loader_spec.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(name, None)
                    raise
        else:
            module = importlib.import_module(mod_name)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's module failed to import: one line, their error
        raise UsageError(f"{spec}: importing {mod_name} failed: {type(exc).__name__}: {exc}"[:400]) from None
    if not hasattr(module, attr):
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))][:8]
        raise UsageError(f"{spec}: {mod_name} has no attribute '{attr}' (callables there: "
                         f"{', '.join(public) or 'none'})")
    return getattr(module, attr)


def _call_factory(source: ModelSource) -> nn.Module:
    factory = _load_factory(source.location, source.spec)
    if not callable(factory):
        raise UsageError(f"{source.spec}: '{source.location.rsplit(':', 1)[1]}' is a {type(factory).__name__}, "
                         "not a function or class that returns an nn.Module")
    try:
        inspect.signature(factory).bind(**source.kwargs)
    except TypeError as exc:
        raise UsageError(f"{source.spec}: the keyword arguments {source.kwargs} do not fit the factory ({exc})") \
            from None
    except ValueError:  # builtins without a signature: let the call say it
        pass
    try:
        model = factory(**source.kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's factory raised: one line naming it
        raise UsageError(f"{source.spec}: the factory raised {type(exc).__name__}: {exc}"[:400]) from None
    if not isinstance(model, nn.Module):
        raise UsageError(f"{source.spec}: the factory returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def build(source: ModelSource, num_classes: int | None, in_channels: int) -> nn.Module:
    """The model of a non-registry source, fitted to `num_classes` outputs and `in_channels` inputs (the head
    replaced and the stem adapted where they differ; an ONNX teacher must already fit)."""
    if source.kind == "onnx":
        from edgekd.models.onnx_teacher import OnnxTeacher

        model = OnnxTeacher(Path(source.location), source.spec)
        model.check_fits(num_classes if num_classes is not None else model.num_classes, in_channels)
        return model
    if source.kind == "export":
        from edgekd.models.exported import load_exported

        model = load_exported(Path(source.location), source.spec)
    elif source.kind == "module":
        model = copy.deepcopy(_IN_MEMORY[source.location])
    else:
        model = _call_factory(source)
    if source.output is not None:
        select_output(model, source.output, source.spec)
    return fit_io(model, num_classes, in_channels, source.spec)


def _pick(out: Any, key: str, name: str) -> Any:
    if isinstance(out, dict) or hasattr(out, "keys"):
        if key not in out:
            raise UsageError(f"{name} returns a mapping without the key {key!r} (keys: {', '.join(map(str, out))})")
        return out[key]
    if isinstance(out, (tuple, list)):
        if not key.lstrip("-").isdigit() or not -len(out) <= int(key) < len(out):
            raise UsageError(f"{name} returns a {type(out).__name__} of {len(out)} items: --teacher-output/"
                             f"--student-output take an index 0..{len(out) - 1}, got {key!r}")
        return out[int(key)]
    if hasattr(out, key):  # HF-style ModelOutput objects
        return getattr(out, key)
    raise UsageError(f"{name} returns a {type(out).__name__}; --teacher-output/--student-output {key!r} selects "
                     "nothing in it")


def select_output(model: nn.Module, key: str, name: str) -> nn.Module:
    """Make `model(x)` return `forward(x)[key]` (a dict key, a tuple index or an attribute) through a
    forward hook: module paths, the head and the state_dict stay as they are."""

    def hook(_module, _inputs, out):
        return _pick(out, key, name)

    model.register_forward_hook(hook)
    return model


def check_logits(model: nn.Module, example: torch.Tensor, name: str, flag: str) -> int:
    """Run one batch; the output must be a (N, classes) tensor. Returns the class count."""
    with torch.no_grad():
        out = model(example)
    if isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[0] == example.shape[0]:
        return int(out.shape[1])
    if isinstance(out, torch.Tensor):
        raise UsageError(f"{name} returns a tensor of shape {tuple(out.shape)}; edgekd needs (batch, classes) logits")
    keys = list(out) if isinstance(out, dict) else (f"{len(out)} items" if isinstance(out, (tuple, list)) else "")
    raise UsageError(f"{name} returns a {type(out).__name__}{f' ({keys})' if keys else ''}, not a logits tensor: "
                     f"pass {flag}-output KEY|INDEX to say which output is the logits")


def fit_io(model: nn.Module, num_classes: int | None, in_channels: int, name: str) -> nn.Module:
    """Replace the head when its class count differs (None: keep it), adapt the stem when the channels
    differ."""
    from edgekd.models import small
    from edgekd.models.heads import find_head, replace_head

    _, head = find_head(model)
    if num_classes is not None and head.out_features != num_classes:
        replace_head(model, num_classes)
    try:
        path, conv = small.first_conv(model)
    except ValueError:
        return model
    if conv.in_channels != in_channels:
        if getattr(model, "edgekd_exported", False):
            raise UsageError(f"{name} takes {conv.in_channels} input channels and the data has {in_channels}: "
                             "an exported program's stem cannot be changed; export it for that many channels")
        small.replace_conv(model, path, in_channels=in_channels)
    return model


def family(source: ModelSource) -> str:
    """A family name for reports and the search: `custom`, `exported`, `onnx`."""
    return {"import": "custom", "module": "custom", "export": "exported", "onnx": "onnx"}.get(source.kind,
                                                                                           source.kind)
