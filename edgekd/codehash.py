"""What code a stage's output depends on: the stage module and every module of its package it reaches.

The reach is found statically (ast, nothing is imported): `import edgekd.x`, `from edgekd.x import y`,
`from . import y` anywhere in a module (at the top or inside a function), and string constants that name an
edgekd module (the runtime registry's `"edgekd.runtimes.openvino"`; an f-string `f"edgekd.stages.{name}"`
reaches every module of that package). Each module's fingerprint is the sha256 of its source bytes; a stage's
code fingerprint is the sorted map of module -> short hash of the whole reach. Third-party libraries are not in
it: their versions are recorded in every manifest and a change is warned about (edgekd.stage_env).

Cost: each edgekd source file is read and parsed once per process (cached): the nine stages' ids took 0.3 s
on a quiet 2-core AMD EPYC VM and 0.75 s beside a test run (bench/RESULTS.md), once per `compress`.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

from edgekd.fsio import short_hash


@functools.lru_cache(maxsize=None)
def _modules(package: str) -> dict[str, Path]:
    """Every module of a top-level package (edgekd): dotted name -> source file (a package is its __init__.py)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{package} is not an importable package")
    root = Path(list(spec.submodule_search_locations)[0]).resolve()
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> list[str]:
    """`name` and every package above it that exists (importing a.b.c runs a/__init__ and a/b/__init__)."""
    parts = name.split(".")
    return [m for m in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if m in modules]


@functools.lru_cache(maxsize=None)
def direct_imports(module: str) -> frozenset[str]:
    """The edgekd modules `module` names in its source (see the module docstring for what counts)."""
    package = module.split(".")[0]
    modules = _modules(package)
    path = modules[module]
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_bytes(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.update(_resolve(alias.name, modules))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.update(_resolve(target, modules))
            for alias in node.names:  # `from edgekd.stages import qad` imports a module
                found.update(m for m in (f"{target}.{alias.name}",) if m in modules)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(package + "."):
            found.update(_resolve(node.value, modules))
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            prefix = str(node.values[0].value)
            if prefix.startswith(package + ".") and prefix.endswith("."):
                found.update(m for m in modules if m.startswith(prefix))
    found.discard(module)
    return frozenset(found)


@functools.lru_cache(maxsize=None)
def reach(module: str) -> frozenset[str]:
    """`module` and every edgekd module it imports, directly or through others. The top-level package's own
    imports are not followed: every `edgekd.x` import runs edgekd/__init__.py, whose lazy `edgekd.compress`
    (the Python API, which reaches the CLI and every stage) is a facade no stage's output depends on."""
    seen = {module}
    todo = [module]
    while todo:
        current = todo.pop()
        if "." not in current and current != module:
            continue  # the root package: its file is hashed, its facade imports are not followed
        for dep in direct_imports(current):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return frozenset(seen)


@functools.lru_cache(maxsize=None)
def module_hash(module: str) -> str:
    return short_hash(_modules(module.split(".")[0])[module].read_bytes())


def code_fingerprint(module: str) -> dict[str, str]:
    """module -> short sha256 of its source, for `module` and everything it reaches (sorted by name)."""
    return {m: module_hash(m) for m in sorted(reach(module))}


def code_id(module: str) -> str:
    """One short hash of `code_fingerprint(module)`: what enters a stage's id."""
    return short_hash(repr(sorted(code_fingerprint(module).items())))


def source_path(module: str) -> Path:
    """The file of `module`, relative to the folder above its package (edgekd/stages/qad.py)."""
    path = _modules(module.split(".")[0])[module]
    depth = len(module.split(".")) - 1 + (path.name == "__init__.py")
    return path.relative_to(path.parents[depth])


def clear_caches() -> None:
    """Forget every parsed module and hash (a long-lived process whose source files were edited; tests)."""
    for fn in (_modules, direct_imports, reach, module_hash):
        fn.cache_clear()
