"""Distillation losses: each module documents its formula and its paper.

* :mod:`~edgekd.losses.hooks`      read intermediate tensors by module path (torchdistill style)
* :mod:`~edgekd.losses.kd`         Hinton et al. 2015 logit distillation
* :mod:`~edgekd.losses.attention`  Zagoruyko & Komodakis 2017 attention transfer
* :mod:`~edgekd.losses.hint`       Romero et al. 2015 FitNets hints
* :mod:`~edgekd.losses.weighting`  per-sample weights over the batch
* :mod:`~edgekd.losses.composite`  configs and the combined `DistillLoss`

Needs torch (``pip install 'edgekd[train]'``); ``import edgekd`` alone never imports this package.
"""

from edgekd.errors import require

require("torch", "train", "distillation losses")

from edgekd.losses.attention import attention_loss, attention_map  # noqa: E402
from edgekd.losses.composite import (  # noqa: E402
    AttentionConfig,
    DistillLoss,
    DistillLossConfig,
    HintConfig,
    KDConfig,
    LayerPair,
    WeightingConfig,
)
from edgekd.losses.hint import HintLoss  # noqa: E402
from edgekd.losses.hooks import FeatureTaps, validate_paths  # noqa: E402
from edgekd.losses.kd import check_compatible, kd_loss  # noqa: E402
from edgekd.losses.weighting import sample_weights, weighted_sum  # noqa: E402

__all__ = [
    "AttentionConfig",
    "DistillLoss",
    "DistillLossConfig",
    "FeatureTaps",
    "HintConfig",
    "HintLoss",
    "KDConfig",
    "LayerPair",
    "WeightingConfig",
    "attention_loss",
    "attention_map",
    "check_compatible",
    "kd_loss",
    "sample_weights",
    "validate_paths",
    "weighted_sum",
]
