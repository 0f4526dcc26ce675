"""NNCF's own progress bars, silenced while edgekd shows its own.

`nncf.quantize` draws rich progress bars ("Statistics collection", "Applying Fast Bias correction") on rich's
global console on every call. edgekd shows one bar per stage on its own consoles (edgekd.cli.common); the
student search quantizes every candidate, which left about twenty finished NNCF bars in the README
quickstart's output. `nncf_quiet()` makes rich's global console quiet while NNCF runs; edgekd's consoles are
separate objects and keep printing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def nncf_quiet() -> Iterator[None]:
    from rich import get_console

    console = get_console()
    was = console.quiet
    console.quiet = True
    try:
        yield
    finally:
        console.quiet = was
