"""Save and load an NNCF-quantized model: its NNCF transformation config, folded BatchNorms and state dict, in
a file `torch.load(weights_only=True)` reads (plain types only)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.errors import UsageError, require
from edgekd.quant.bn_fold import apply_folded_structure
from edgekd.quant.ptq import FOLDED_ATTR, _nncf, _torch, module_device

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

CHECKPOINT_FORMAT = "edgekd-nncf-quantized"
CHECKPOINT_VERSION = 1


def save_quantized(qmodel: nn.Module, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write the NNCF transformation config and the state dict; loadable with ``weights_only=True``.

    The NNCF config holds tuples and enums; it is stored as a JSON string so the file has plain types
    only. ``meta`` must be JSON-serialisable (architecture, preprocessing, spec ...).
    """
    torch = _torch()
    _nncf()
    nncf_torch = require("nncf.torch", "train", "saving a quantized model uses NNCF")
    config = nncf_torch.get_config(qmodel)
    try:
        config_json = json.dumps(config)
        meta_json = json.dumps(meta or {})
    except TypeError as exc:
        raise UsageError(f"cannot save the quantized model: {exc}") from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in qmodel.state_dict().items()}
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "nncf_config_json": config_json,
            "meta_json": meta_json,
            "folded_batchnorm_json": json.dumps(getattr(qmodel, FOLDED_ATTR, [])),
            "state_dict": state,
        },
        path,
    )
    return path


def read_quantized_meta(path: str | Path) -> dict[str, Any]:
    """The ``meta`` dict stored by :func:`save_quantized`."""
    return json.loads(_load_checkpoint(path)["meta_json"])


def _load_checkpoint(path: str | Path) -> dict[str, Any]:
    torch = _torch()
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(f"{path} is not a quantized checkpoint written by edgekd (save_quantized)")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise UsageError(f"{path}: unsupported quantized checkpoint version {ckpt.get('version')}")
    return ckpt


def load_quantized(
    float_model: nn.Module, path: str | Path, example_input: torch.Tensor | None = None
) -> nn.Module:
    """Rebuild the quantized model: NNCF config onto a copy of ``float_model``, then the state dict.

    ``float_model`` (the same architecture, any weights) is not modified. With ``example_input`` one
    forward pass checks the result runs. Returns the model in eval mode.
    """
    torch = _torch()
    _nncf()
    nncf_torch = require("nncf.torch", "train", "loading a quantized model uses NNCF")
    ckpt = _load_checkpoint(path)
    model = copy.deepcopy(float_model).eval()
    folded = json.loads(ckpt["folded_batchnorm_json"])
    try:
        apply_folded_structure(model, folded)
    except KeyError as exc:
        raise UsageError(f"{path} does not fit this architecture: it has no module {exc}") from exc
    qmodel = nncf_torch.load_from_config(model, json.loads(ckpt["nncf_config_json"]))
    setattr(qmodel, FOLDED_ATTR, folded)
    try:
        qmodel.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise UsageError(f"{path} does not fit this architecture: {first}") from exc
    qmodel.eval()
    if example_input is not None:
        with torch.no_grad():
            qmodel(example_input.to(module_device(qmodel)))
    return qmodel
