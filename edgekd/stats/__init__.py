"""Statistics shared by the benchmark and the gate (neither imports the other for them).

- sampling: `interleaved_samples`, baseline and candidate timed in alternating blocks (ABBA rounds);
- paired: `compare` (Hodges-Lehmann ratio, bootstrap CI, Wilcoxon / Mann-Whitney, noise and bimodality) and
  the verdict rule, `decide_with_rerun`, and their configuration `GateConfig` (named after its first user).

numpy and scipy only: no runtime, no torch, nothing else of edgekd but edgekd.errors.
"""

from __future__ import annotations

from edgekd.stats.paired import Decision, GateConfig, GateStats, Verdict, compare, decide_with_rerun
from edgekd.stats.sampling import InterleavedSamples, interleaved_samples

__all__ = ["Decision", "GateConfig", "GateStats", "InterleavedSamples", "Verdict", "compare", "decide_with_rerun",
           "interleaved_samples"]
