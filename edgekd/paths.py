"""Checks of paths the user passed: a missing path and a path of the wrong kind get different messages.

"does not exist" only when nothing is there; a folder where a file is needed (or a file where a folder is
needed) says what it is and what was expected.
"""

from __future__ import annotations

from pathlib import Path

from edgekd.errors import UsageError


def require_file(path: Path, what: str, expected: str = "a file") -> Path:
    """`path` must be a file; UsageError naming `what` and `expected` otherwise."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        raise UsageError(f"{what} {path} is a folder, but {expected} is expected: pass the file itself")
    if path.exists():
        raise UsageError(f"{what} {path} is not a regular file (a device, socket or FIFO); {expected} is expected")
    raise UsageError(f"{what} {path} does not exist")


def require_dir(path: Path, what: str, expected: str = "a folder") -> Path:
    """`path` must be a folder; UsageError naming `what` and `expected` otherwise."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.exists():
        raise UsageError(f"{what} {path} is a file, but {expected} is expected")
    raise UsageError(f"{what} {path} does not exist")
