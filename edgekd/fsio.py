"""Publishing results on disk so that a crash or a power cut never leaves a half-written one in place.

Every result edgekd publishes (manifests, checkpoints, stage folders, reports, bundles) is written under a
temporary name, flushed to the disk (fsync of the file, or of every file of a folder), renamed over its final
name, and the rename itself is flushed (fsync of the parent folder). A rename alone is atomic for running
processes but not across a power cut: without the fsyncs the new name can reach the disk before the data.

Leftovers of a killed process (`.<name>.tmp-<pid>`) are removed by the next writer once that pid is gone
(`remove_dead_leftovers`); things found corrupt are moved aside as `<name>.corrupt-<UTC time>`, never deleted.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

_PID_SUFFIX = re.compile(r"\.(?:tmp|old)-(\d+)$")


def fsync_path(path: Path) -> None:
    """Flush one file, or a folder's entry list, to the disk (a platform that cannot open or flush a folder,
    such as Windows, skips folders: its renames are journaled by the filesystem instead)."""
    is_dir = Path(path).is_dir()
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if is_dir else 0))
    except OSError:
        if is_dir:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not is_dir:
            raise
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file and folder under `root` (files written by libraries that do not fsync themselves)."""
    root = Path(root)
    if not root.is_dir():
        fsync_path(root)
        return
    for folder, _dirs, files in os.walk(root):
        for name in files:
            full = Path(folder, name)
            if not full.is_symlink():
                fsync_path(full)
        fsync_path(Path(folder))


def publish(tmp: Path, final: Path) -> None:
    """Rename a finished file or folder `tmp` over `final` durably (fsync data, rename, fsync the parent).
    A folder that already exists at `final` is replaced: moved aside first, removed after the rename."""
    tmp, final = Path(tmp), Path(final)
    fsync_tree(tmp)
    old = None
    if final.is_dir() and not final.is_symlink():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_path(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def tmp_name(final: Path) -> Path:
    """The temporary name this process writes `final` under before publishing it."""
    final = Path(final)
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a whole file durably: temporary name, fsync, rename, fsync of the folder."""
    path = Path(path)
    tmp = tmp_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (a zombie or another user's process counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_leftovers(folder: Path, name: str | None = None) -> list[Path]:
    """Remove `.<name>.tmp-<pid>` / `.<name>.old-<pid>` files or folders in `folder` (any name when None) whose
    writer is gone; returns what was removed."""
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in folder.glob(f".{name or '*'}.*-*"):
        m = _PID_SUFFIX.search(entry.name)
        if not m or (name is not None and entry.name[: m.start()] != f".{name}"):
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or pid_alive(pid):
            continue
        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() and not entry.is_symlink() else entry.unlink(
            missing_ok=True)
        removed.append(entry)
    return removed


def utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def move_aside(path: Path, why: str | None, then: str = "", tag: str = "corrupt") -> Path:
    """Rename `path` to `<name>.<tag>-<UTC time>` beside it; with `why`, print one warning line saying what was
    wrong, where it went and (`then`) what happens next. Returns the new path."""
    path = Path(path)
    aside = path.with_name(f"{path.name}.{tag}-{utc_stamp()}")
    os.replace(path, aside)
    fsync_path(path.parent)
    if why:
        sys.stderr.write(f"warning: {path} {why}: moved aside to {aside.name}{'; ' + then if then else ''}\n")
        sys.stderr.flush()
    return aside


def short_hash(data: bytes | str, length: int = 12) -> str:
    """sha256 of `data` (a str as UTF-8), hex, cut to `length` characters: the one recipe behind stage ids,
    data fingerprints, preprocessing keys and code hashes."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()[:length]


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    """The sha256 (hex) of a file's bytes, read a chunk at a time: the one definition every manifest, bundle,
    engine fingerprint and weights identity uses."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_problems(folder: Path, expected) -> list[tuple[str, str]]:
    """(path, "missing" | "changed") for each expected (relative path, sha256) under folder whose file is
    absent or whose content no longer has that sha256: the one check behind manifests and compile records."""
    out = []
    for rel, digest in expected:
        full = Path(folder) / rel
        if not full.is_file():
            out.append((rel, "missing"))
        elif sha256_file(full) != digest:
            out.append((rel, "changed"))
    return out
