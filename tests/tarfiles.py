"""Hand-made .tar.gz archives for the tests of bundle unpacking (members a real bundle never holds)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def archive(path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    """Write `members` ((TarInfo, data or None), in order) into the .tar.gz `path`."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path
