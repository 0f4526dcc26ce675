"""Third-party packages whose private parts edgekd touches, and the versions it is tested with.

One upstream release can move a private name and break every run, so each such package is bounded: pyproject
allows only the range below (tests/test_compat.py keeps the two in step), `.ci/run` installs with the exact
versions of `constraints.txt`, and the module that touches the private part calls :func:`check_tested` when it
is imported, so a version outside the range stops with one line (UntestedDependency, exit 2) naming the
command that installs a tested one, instead of failing somewhere deep in a run. `EDGEKD_ALLOW_UNTESTED=1`
turns the refusal into a one-line warning: how the README's "try the newest versions" command runs the tests
against the newest releases.
"""

from __future__ import annotations

import os
import re
import sys
from importlib import metadata

from edgekd.errors import UntestedDependency

ALLOW_ENV = "EDGEKD_ALLOW_UNTESTED"

# distribution -> (lowest allowed, first version not allowed, the private part edgekd touches and where)
TESTED: dict[str, tuple[str, str, str]] = {
    "nncf": ("2.16", "3.5", "QuantizedFunctionsCPU._loaded_namespace (edgekd/quant/kernels.py)"),
    "torchao": ("0.10", "0.19", "quantize_pt2e._quant_node_constraint (edgekd/quant/pt2e.py)"),
    "executorch": ("1.5", "1.6", "portable_lib._unsafe_reset_threadpool (edgekd/runtimes/mobile.py)"),
    "ai-edge-litert": ("2.3", "2.4", "Interpreter._get_ops_details (edgekd/bundle/mobile.py)"),
}
_warned: set[str] = set()


def release(version: str) -> tuple[int, ...]:
    """The numeric release part of a version string ('3.4.0.dev1+cpu' -> (3, 4, 0))."""
    match = re.match(r"\d+(\.\d+)*", version.strip())
    return tuple(int(p) for p in match.group(0).split(".")) if match else ()


def check_tested(dist: str) -> None:
    """Refuse an installed `dist` outside its tested range (nothing to check when it is not installed)."""
    low, high, private = TESTED[dist]
    try:
        installed = metadata.version(dist)
    except metadata.PackageNotFoundError:
        return
    if release(low) <= release(installed) < release(high):
        return
    line = (f"{dist} {installed} is outside the versions edgekd is tested with (>={low},<{high}; edgekd uses its "
            f"private {private}): pip install '{dist}>={low},<{high}'")
    if os.environ.get(ALLOW_ENV) == "1":
        if dist not in _warned:
            _warned.add(dist)
            sys.stderr.write(f"warning: {line} ({ALLOW_ENV}=1: trying it anyway)\n")
        return
    raise UntestedDependency(f"{line}, or set {ALLOW_ENV}=1 to try it anyway")
