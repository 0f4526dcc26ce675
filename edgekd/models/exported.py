"""A `torch.export` archive (.pt2) as a trainable module, with no user code and no pickle.

`torch.export.load(path).module()` gives a graph module whose `train()`/`eval()` raise: the mode of
BatchNorm and dropout is a constant in the graph. `ExportedModule` is a plain `torch.fx.GraphModule` over the
same graph whose `train(mode)` rewrites those constants with torchao's PT2E helpers
(`move_exported_model_to_train/eval`), so edgekd's trainer, evaluation and NNCF see an ordinary module. The
holders of the parameters that feed `aten.linear` become real `nn.Linear` modules (same parameters), so the
classifier head is found and replaced like any other model's.

What it cannot do: forward hooks never fire on the graph's holders (the graph calls aten ops, not modules),
so hints and attention by layer path, channel pruning and depth pruning do not apply to it; a program
exported with a fixed batch size cannot train at another one (re-export with a dynamic batch dimension).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from edgekd.errors import UsageError


class ExportedModule(torch.fx.GraphModule):
    """A graph module from a .pt2 archive whose train()/eval() switch the graph's BatchNorm/dropout mode."""

    edgekd_exported = True

    def train(self, mode: bool = True):  # noqa: D102 - nn.Module.train's contract
        if getattr(self, "_edgekd_mode", None) != mode:
            from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

            (move_exported_model_to_train if mode else move_exported_model_to_eval)(self)
            object.__setattr__(self, "_edgekd_mode", mode)
        self.training = mode
        for child in self.children():
            child.training = mode
        return self


def _linear_holders(gm: torch.fx.GraphModule) -> dict[str, tuple[str, str | None]]:
    """{holder path: (weight name, bias name)} for each aten.linear whose weight is a parameter."""
    out: dict[str, tuple[str, str | None]] = {}
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target not in (torch.ops.aten.linear.default,):
            continue
        args = list(node.args) + [None] * (3 - len(node.args))
        w, b = args[1], args[2]
        if getattr(w, "op", None) != "get_attr":
            continue
        holder, _, wname = str(w.target).rpartition(".")
        bname = str(b.target).rpartition(".")[2] if getattr(b, "op", None) == "get_attr" and \
            str(b.target).rpartition(".")[0] == holder else None
        if holder and wname == "weight" and bname in (None, "bias"):
            out[holder] = (wname, bname)
    return out


def _promote_linears(gm: torch.fx.GraphModule) -> None:
    for holder, (_, bname) in _linear_holders(gm).items():
        old = gm.get_submodule(holder)
        if isinstance(old, nn.Linear) or any(True for _ in old.children()):
            continue
        weight = old.weight
        lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bname is not None)
        lin.weight = weight
        if bname is not None:
            lin.bias = old.bias
        gm.set_submodule(holder, lin)


def _static_batch(ep) -> int | None:
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in {s.arg.name for s in ep.graph_signature.input_specs
                                                      if s.kind.name == "USER_INPUT"}:
            val = node.meta.get("val")
            if val is not None and val.dim() == 4 and isinstance(val.shape[0], int):
                return int(val.shape[0])
    return None


def load_exported(path: Path, name: str) -> ExportedModule:
    """The archive at `path` as an ExportedModule in eval mode, or one UsageError naming the file."""
    import logging
    import zipfile

    hint = "save one with torch.export.save(torch.export.export(model, (example,)), 'model.pt2')"
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{name} is not a loadable torch.export archive (not a zip archive): {hint}")
    quiet = logging.getLogger("torch.export")  # it logs a traceback before its fallback loader fails too
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        ep = torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001 - torch raises many types on a damaged or foreign file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"{name} is not a loadable torch.export archive ({first[:160]}): {hint}") from None
    finally:
        quiet.setLevel(level)
    inputs = [s for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    if len(inputs) != 1:
        raise UsageError(f"{name} takes {len(inputs)} inputs; edgekd feeds one image batch (N, C, H, W)")
    batch = _static_batch(ep)
    if batch is not None:
        raise UsageError(f"{name} was exported with a fixed batch size of {batch}, so it cannot train or run at "
                         "another one: re-export with dynamic_shapes={'x': {0: torch.export.Dim('batch')}} "
                         "(the name of your forward's argument in place of 'x')")
    gm = ep.module()
    model = ExportedModule(gm, gm.graph)
    _promote_linears(model)
    model.recompile()
    object.__setattr__(model, "_edgekd_mode", None)
    return model.eval()
