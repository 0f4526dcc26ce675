"""Checks of paths the user passed: a missing path and a path of the wrong kind get different messages.

"does not exist" only when nothing is there; a folder where a file is needed (or a file where a folder is
needed) says what it is and what was expected.
"""

from __future__ import annotations

from pathlib import Path

from edgekd.errors import UsageError


def _require(path: Path, what: str, folder: bool, expected: str) -> Path:
    path = Path(path)
    if path.is_dir() if folder else path.is_file():
        return path
    if not path.exists():
        raise UsageError(f"{what} {path} does not exist")
    if path.is_dir():
        raise UsageError(f"{what} {path} is a folder, but {expected} is expected: pass the file itself")
    kind = "a file" if path.is_file() else "a device, socket or FIFO"
    raise UsageError(f"{what} {path} is {kind}, but {expected} is expected")


def require_file(path: Path, what: str, expected: str = "a file") -> Path:
    """`path` must be a regular file; otherwise a UsageError naming `what`, what it is and `expected`."""
    return _require(path, what, False, expected)


def require_dir(path: Path, what: str, expected: str = "a folder") -> Path:
    """`path` must be a folder; otherwise a UsageError naming `what`, what it is and `expected`."""
    return _require(path, what, True, expected)
