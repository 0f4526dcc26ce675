"""The import graph: the statistics sit in a neutral package, the gate and the benchmark are in no circle,
and the circles left do not grow (bench/import_cycles.py measures them; bench/RESULTS.md has the numbers)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("import_cycles", ROOT / "bench" / "import_cycles.py")
cycles = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cycles)

# circles among single modules after the statistics and runtime facts moved (was 6, with 19 modules): lower it
# when you remove one, never raise it
MODULE_CIRCLES_AT_MOST = 4


def test_statistics_depend_on_nothing_of_edgekd_but_its_errors():
    edges = cycles.graph(by_module=True)
    for module in ("edgekd.stats", "edgekd.stats.paired", "edgekd.stats.sampling"):
        assert edges[module] <= {"edgekd.errors", "edgekd.stats.paired", "edgekd.stats.sampling"}, module


def test_gate_and_stats_are_in_no_circle_of_subpackages():
    found = cycles.circles(cycles.graph())
    assert not [c for c in found if {"edgekd.gate", "edgekd.stats"} & set(c)], found
    assert "edgekd.gate" not in cycles.graph()["edgekd.benchmark"]  # the benchmark no longer borrows the gate's


def test_module_circles_do_not_grow():
    found = cycles.circles(cycles.graph(by_module=True))
    assert len(found) <= MODULE_CIRCLES_AT_MOST, found
    assert not [c for c in found if any(m.startswith(("edgekd.gate", "edgekd.benchmark", "edgekd.stats"))
                                        for m in c)], found
