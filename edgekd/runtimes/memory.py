"""Process memory and artifact size, without psutil."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far, in bytes.

    `resource.getrusage(RUSAGE_SELF).ru_maxrss` is in kilobytes on Linux and in bytes on macOS. It is a high-water
    mark for the whole process lifetime (it never goes down), so measure in a fresh process to attribute it
    to one model. Returns 0 where `resource` is unavailable (Windows).
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return 0
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss) if sys.platform == "darwin" else int(maxrss) * 1024


def current_rss_bytes() -> int | None:
    """Current resident set size in bytes from /proc/self/statm (Linux only); None elsewhere."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            resident_pages = int(fh.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def model_size_bytes(paths: Path | str | Iterable[Path | str]) -> int:
    """Total size on disk of the artifact's files (e.g. IR .xml + .bin, ONNX + external data).

    A directory counts every regular file beneath it. A missing path raises FileNotFoundError.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    total = 0
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise FileNotFoundError(f"artifact file not found: {p}")
        files = [f for f in p.rglob("*") if f.is_file()] if p.is_dir() else [p]
        for f in files:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                total += f.stat().st_size
    return total
