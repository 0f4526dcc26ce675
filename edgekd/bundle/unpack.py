"""Unpack a bundle .tar.gz for `edgekd inspect` without trusting it: an archive is data, never directions.

Every member is checked here, on every supported Python, before anything is written: a relative name with
no `..` and no drive, and only regular files and folders (no symbolic or hard links, devices or FIFOs: a
bundle holds plain files, and `edgekd export-bundle` writes nothing else). Where the tarfile module has
extraction filters (Python >= 3.11.4, 3.10.12), `filter="data"` is applied as well, as a second line of
defence; older Pythons extract only the members that passed the checks.
"""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

from edgekd.errors import UsageError


def member_problem(member: tarfile.TarInfo) -> str | None:
    """Why this member must not be extracted, or None."""
    name = member.name
    win = PureWindowsPath(name)
    if not name or PurePosixPath(name).is_absolute() or win.drive or win.is_absolute():
        return f"member '{name}' has an absolute name"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return f"member '{name}' leaves the extraction folder ('..')"
    if member.issym() or member.islnk():
        kind = "symbolic" if member.issym() else "hard"
        return f"member '{name}' is a {kind} link (to '{member.linkname}'); a bundle holds plain files only"
    if not (member.isfile() or member.isdir()):
        return f"member '{name}' is a device, FIFO or other special file; a bundle holds plain files only"
    return None


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract `archive` (a .tar.gz) into `dest` after checking every member; UsageError (one line) when the
    file is not a gzip tar or any member is unsafe, in which case nothing at all is extracted."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()  # reads the whole archive: a truncated or non-gzip file fails here
            for m in members:
                why = member_problem(m)
                if why:
                    raise UsageError(f"{archive}: unsafe archive, nothing extracted: {why}")
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - Python < 3.11.4 / 3.10.12: the checks above are the defence
                tar.extractall(dest, members=members)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"{archive}: not a readable bundle .tar.gz ({reason})") from None
