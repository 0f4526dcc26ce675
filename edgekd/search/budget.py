"""Options of `--student auto`: the search stage's config, the time budget, and the checks made before work."""

from __future__ import annotations

import math
import re
import time
from typing import Any

from edgekd.errors import UsageError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """'45m', '90s', '1.5h' or a bare number of minutes -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"--time-budget {text}: give a positive duration such as 45m, 90s or 1.5h")
    return float(m.group(1)) * _UNITS[m.group(2) or "m"]


def check_auto_options(opts: Any) -> None:
    """Options that name student layers or weights need an explicit --student."""
    for flag, value in (("--student-weights", opts.student_weights), ("--attention", opts.attention),
                        ("--hint", opts.hint), ("--train-only", opts.train_only)):
        if value:
            raise UsageError(f"{flag} names the student's layers or weights: pass an explicit --student ARCH with it "
                             "(--student auto picks the architecture during the run)")
    if opts.time_budget is not None:
        parse_duration(opts.time_budget)


def search_config(opts: Any, target: Any, loss: dict, common: dict) -> dict[str, Any]:
    from edgekd.runtimes import runtime_class

    return dict(target=target.model_dump(mode="json"), max_family=opts.search_max_family,
                prune_ratios=opts.search_prune_ratios, prune_depths=opts.search_prune_depths,
                # a target that pins the input size pins the deployed student's too: no smaller sizes
                resolutions=[] if target.input_size is not None else opts.search_resolutions,
                importance=opts.search_importance,
                preset=runtime_class(target.runtime.name).quant_preset(target.runtime.device),
                proxy_epochs=opts.proxy_epochs, proxy_fraction=opts.proxy_fraction,
                time_budget_s=parse_duration(opts.time_budget) if opts.time_budget else None, loss=loss,
                train=dict(common, epochs=opts.proxy_epochs, lr=opts.lr))


def one_proxy_run_s(opts: Any, dataset: Any) -> float:
    """A lower bound on one proxy run: training steps of the cheapest family member (timed on real images) times
    the steps one proxy run takes. Nothing is written."""
    from edgekd.data.batches import eval_batches
    from edgekd.models.registry import build_model
    from edgekd.search.family import family_for

    pre = dataset.preprocessing
    name = family_for(pre.input_size[0])[0]
    model = build_model(name, num_classes=dataset.num_classes, in_channels=pre.channels, input_size=pre.input_size[0])
    x, y = next(eval_batches(dataset.train, pre, opts.batch_size))
    steps = math.ceil(len(dataset.train) * opts.proxy_fraction / opts.batch_size) * opts.proxy_epochs
    return min(sgd_step_seconds(model, x, y, 3)[1:]) * steps


def sgd_step_seconds(model: Any, x: Any, y: Any, n: int) -> list[float]:
    """Wall seconds of each of n SGD steps (forward, cross-entropy, backward, update) of model on (x, y); the
    first includes warm-up, so callers drop it."""
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return times


def check_time_budget(opts: Any, dataset: Any) -> None:
    """--time-budget smaller than one proxy run: a clear error before any stage runs."""
    if opts.student != "auto" or opts.time_budget is None:
        return
    budget = parse_duration(opts.time_budget)
    need = one_proxy_run_s(opts, dataset)
    if budget < need:
        raise UsageError(f"--time-budget {opts.time_budget} ({budget:g} s) is shorter than one proxy run of the "
                         f"search (at least {need:.0f} s: {opts.proxy_epochs} epoch(s) on {opts.proxy_fraction:g} "
                         f"of {len(dataset.train)} training images for the cheapest candidate): raise it, or lower "
                         "proxy_fraction")
