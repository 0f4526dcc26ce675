"""Models: a name -> constructor registry (edgekd's own, torchvision, timm), heads, and safe checkpoints.

This package imports torch; `import edgekd` does not import it.
"""

from edgekd.models.checkpoint import (
    FORMAT,
    LoadReport,
    load_edgekd_checkpoint,
    load_weights,
    read_state_dict,
    save_edgekd_checkpoint,
)
from edgekd.models.heads import find_head, head_parameter_names, replace_head, unfreeze_stages
from edgekd.models.registry import (
    build_model,
    list_models,
    model_family,
    preprocessing_defaults,
    register_model,
)

__all__ = [
    "FORMAT",
    "LoadReport",
    "build_model",
    "find_head",
    "head_parameter_names",
    "list_models",
    "load_edgekd_checkpoint",
    "load_weights",
    "model_family",
    "preprocessing_defaults",
    "read_state_dict",
    "register_model",
    "replace_head",
    "save_edgekd_checkpoint",
    "unfreeze_stages",
]
