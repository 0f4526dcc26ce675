"""Import circles among edgekd's subpackages: the strongly connected components of the package graph.

Nodes are edgekd's subpackages (edgekd.benchmark, edgekd.gate, ...) and its top-level modules (edgekd.plan);
an edge A -> B is any import of B's code from A's (at the top of a module or inside a function: found
statically with ast by edgekd.codehash.direct_imports), except a module's edge to its own enclosing package. A component of more than one node is a circle.
Usage: python bench/import_cycles.py [--modules]   (--modules: the same over single modules)
Prints one line per circle and a summary line; exit 0 always (tests/test_import_graph.py is the check).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's edgekd

from edgekd import codehash  # noqa: E402


def node(module: str, by_module: bool) -> str:
    parts = module.split(".")
    return module if by_module else ".".join(parts[:2])


def graph(by_module: bool = False) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for module in codehash._modules("edgekd"):
        if module == "edgekd":
            continue
        src = node(module, by_module)
        edges.setdefault(src, set())
        for dep in codehash.direct_imports(module):
            dst = node(dep, by_module)
            # importing a submodule runs its package's __init__: not a dependency of a module on its own package
            if dep != "edgekd" and dst != src and not module.startswith(dst + "."):
                edges[src].add(dst)
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return sorted(out)


def main() -> None:
    by_module = "--modules" in sys.argv
    edges = graph(by_module)
    found = circles(edges)
    for comp in found:
        inner = sum(len(edges[a] & set(comp)) for a in comp)
        print(f"circle of {len(comp)} ({inner} edges): {', '.join(comp)}")
    what = "modules" if by_module else "subpackages and top-level modules"
    print(f"{len(found)} circles among {len(edges)} {what}, {sum(map(len, found))} nodes in them")


if __name__ == "__main__":
    main()
