"""Measure baseline (A) and candidate (B) in the same job, interleaved, so that drift hits both alike.

Each round times a block of `runs_per_round` calls of one arm, then a block of the other. With
order='alternate' the arm that goes first alternates every round (A B | B A | A B ...: ABBA), so a
steady drift (clocks ramping, a neighbour warming up) adds as much to A as to B; order='random' draws
the first arm per round from a seeded generator. Every call is timed alone with time.perf_counter_ns;
the garbage collector runs once before the first round and is paused inside each round (as timeit
does), so a collection lands between rounds rather than inside a timed block.

The statistic the gate tests is the **per-round median** of each arm, not the per-call times: calls in
one block are autocorrelated (caches, frequency, a neighbour's burst), so treating 600 calls as 600
independent samples makes a rank test claim far more certainty than the data holds, while round
medians are close to independent and shrug off a preemption that hits fewer than half a block's calls.
The per-call times are kept for percentiles (latency budgets) and plots.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgekd.errors import UsageError


@dataclass(frozen=True, eq=False)
class InterleavedSamples:
    """Per-call times (ms) shaped (rounds, runs_per_round) per arm, and which arm went first per round.

    Iterating yields the per-round medians of A then of B, so ``a, b = interleaved_samples(...)`` gives
    exactly what :func:`edgekd.stats.paired.compare` expects.
    """

    calls_a_ms: np.ndarray
    calls_b_ms: np.ndarray
    first: tuple[str, ...]  # 'A' or 'B' per round

    @property
    def round_medians_a_ms(self) -> np.ndarray:
        return np.median(self.calls_a_ms, axis=1)

    @property
    def round_medians_b_ms(self) -> np.ndarray:
        return np.median(self.calls_b_ms, axis=1)

    @property
    def rounds(self) -> int:
        return int(self.calls_a_ms.shape[0])

    def __iter__(self) -> Iterator[np.ndarray]:
        yield self.round_medians_a_ms
        yield self.round_medians_b_ms


def _time_block(fn: Callable[[], object], n: int, out: np.ndarray) -> None:
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        fn()
        out[i] = clock() - t0


def interleaved_samples(
    run_a: Callable[[], object],
    run_b: Callable[[], object],
    *,
    rounds: int = 30,
    runs_per_round: int = 20,
    warmup_runs: int = 20,
    order: Literal["alternate", "random"] = "alternate",
    seed: int = 0,
) -> InterleavedSamples:
    """Time `run_a` and `run_b` in interleaved blocks; see the module docstring for the design.

    Both callables must do the whole unit of work (e.g. ``lambda: session.infer(batch)``) and get the
    same runtime, settings and input. Warm-up calls (untimed) alternate A, B before the first round.
    """
    if rounds < 1 or runs_per_round < 1 or warmup_runs < 0:
        raise UsageError("rounds and runs_per_round must be >= 1 and warmup_runs >= 0")
    if order not in ("alternate", "random"):
        raise UsageError(f"order must be 'alternate' or 'random', not {order!r}")
    for _ in range(warmup_runs):
        run_a()
        run_b()

    rng = np.random.default_rng(seed)
    ns_a = np.empty((rounds, runs_per_round), dtype=np.int64)
    ns_b = np.empty((rounds, runs_per_round), dtype=np.int64)
    first: list[str] = []
    gc_was_enabled = gc.isenabled()
    gc.collect()
    try:
        for r in range(rounds):
            a_first = (r % 2 == 0) if order == "alternate" else bool(rng.integers(2))
            first.append("A" if a_first else "B")
            blocks = [(run_a, ns_a[r]), (run_b, ns_b[r])]
            if not a_first:
                blocks.reverse()
            gc.disable()  # collections may run between rounds, never inside a timed block
            for fn, out in blocks:
                _time_block(fn, runs_per_round, out)
            if gc_was_enabled:
                gc.enable()
    finally:
        if gc_was_enabled:
            gc.enable()
    return InterleavedSamples(calls_a_ms=ns_a / 1e6, calls_b_ms=ns_b / 1e6, first=tuple(first))
