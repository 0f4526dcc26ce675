"""A run directory: checked before anything is written, and written by one process at a time.

`check_writable` refuses a `--run-dir` that is a file or that this user cannot write (read-only folder or
filesystem) before any work starts, so nothing is changed. `RunDirLock` is an advisory lock (the `filelock`
package: flock on `<run_dir>/.lock`) held for a whole `compress` (and by `export-bundle` writing into a run):
a second process gets one line naming the holder (PID, host, start time, command, from the `.lock.owner.json`
sidecar) and exit 2, or waits with `--wait`. The kernel drops a flock when its holder dies, so a killed run
leaves only its sidecar behind: the next writer takes over with one warning line naming the dead holder.
The lock file is created only once the run is legitimately being written (after input validation).
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path

from edgekd.errors import UsageError
from edgekd.fsio import pid_alive, write_atomic

LOCK_NAME = ".lock"
OWNER_NAME = ".lock.owner.json"


def check_writable(run_dir: Path, what: str = "--run-dir") -> None:
    """UsageError (exit 2, nothing written) when `run_dir` is a file, lies under a file, or cannot be written."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"{what} {run_dir} is a file, not a directory: pass a folder (it is created when missing)")
    existing = run_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{what} {run_dir} lies under {existing}, which is a file: pass a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "it" if existing == run_dir else f"its parent {existing}"
        raise UsageError(f"{what} {run_dir} cannot be written: {where} is read-only for this user; make it "
                         f"writable or pass another {what}")


def _describe(owner: dict | None) -> str:
    if not owner:
        return "another edgekd process (it has not recorded its PID yet)"
    host = owner.get("host", "?")
    where = "" if host == socket.gethostname() else f" on host {host}"
    return (f"PID {owner.get('pid', '?')}{where} (started {owner.get('started_at', '?')}: "
            f"{owner.get('command', '?')})")


class RunDirLock:
    """One writer per run directory. Use as a context manager or acquire()/release()."""

    def __init__(self, run_dir: Path, wait: bool = False) -> None:
        from filelock import FileLock

        self.run_dir = Path(run_dir)
        self.wait = wait
        self.path = self.run_dir / LOCK_NAME
        self.owner_path = self.run_dir / OWNER_NAME
        self._lock = FileLock(str(self.path))
        self._held = False

    # -- reading the holder -------------------------------------------------------------------------
    def owner(self) -> dict | None:
        try:
            data = json.loads(self.owner_path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _busy(self) -> UsageError:
        owner = None
        for _ in range(10):  # the holder writes its sidecar just after taking the lock
            owner = self.owner()
            if owner is not None:
                break
            time.sleep(0.1)
        if owner and owner.get("host") == socket.gethostname() and not pid_alive(int(owner.get("pid", 0))):
            return UsageError(f"run directory {self.run_dir} is locked by a leftover child of {_describe(owner)}, "
                              f"which has ended: stop what still holds {self.path} (`fuser {self.path}`), or "
                              "pass --wait")
        return UsageError(f"run directory {self.run_dir} is in use by {_describe(owner)}: wait for it to finish, "
                          "pass --wait to queue behind it, or pass another --run-dir")

    def _try(self) -> bool:
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        except OSError as exc:
            raise UsageError(f"cannot lock run directory {self.run_dir}: {exc.strerror or exc}") from None
        return True

    # -- taking it ------------------------------------------------------------------------------------
    def check_free(self) -> None:
        """Fail early (before loading data) when another process holds an existing lock; creates nothing."""
        if self.wait or not self.path.is_file():
            return
        if not self._try():
            raise self._busy()
        self._lock.release()

    def acquire(self) -> RunDirLock:
        check_writable(self.run_dir)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create run directory {self.run_dir}: {exc.strerror or exc}") from None
        if not self._try():
            if not self.wait:
                raise self._busy()
            sys.stderr.write(f"waiting for {_describe(self.owner())} to release run directory {self.run_dir}\n")
            sys.stderr.flush()
            self._lock.acquire(poll_interval=0.5)
        self._held = True
        try:
            self._take_over_note()
            write_atomic(self.owner_path, json.dumps({
                "pid": os.getpid(), "host": socket.gethostname(),
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "command": shlex.join(["edgekd", *sys.argv[1:]])[:300],
            }))
        except BaseException:
            self.release()
            raise
        return self

    def _take_over_note(self) -> None:
        """A sidecar left behind means its writer ended without releasing the lock (killed, or crashed hard)."""
        previous = self.owner()
        if previous is None or previous.get("pid") == os.getpid():
            return
        same_host = previous.get("host") == socket.gethostname()
        state = "which is no longer running" if same_host and not pid_alive(int(previous.get("pid", 0))) else \
            "which ended without releasing it"
        sys.stderr.write(f"warning: taking over the stale lock of run directory {self.run_dir} from "
                         f"{_describe(previous)}, {state}\n")
        sys.stderr.flush()

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        try:
            owner = self.owner()
            if owner is not None and owner.get("pid") == os.getpid():
                self.owner_path.unlink(missing_ok=True)
        finally:
            self._lock.release()

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ----------------------------------------------------------------------------------------- report history
HISTORY = "history"
REPORT_ITEMS = ("report.json", "report.md", "report.html", "report_assets", "bundle", "bundle.tar.gz")


def final_stage_id(report: dict) -> str:
    stages = report.get("stages") or []
    return str(stages[-1].get("id", "unknown")) if stages and isinstance(stages[-1], dict) else "unknown"


def keep_earlier_report(run_dir: Path, new_final_id: str) -> Path | None:
    """Before a run with a different final stage (a variant: another --temperature, student, target...) writes
    its report and bundle, move the earlier ones to `history/<UTC time>-<earlier final stage id>/`; return that
    folder, or None when there was no earlier report or it describes the same stages (then it is replaced)."""
    run_dir = Path(run_dir)
    report = run_dir / "report.json"
    if not report.is_file():
        return None
    try:
        earlier = final_stage_id(json.loads(report.read_text()))
    except (OSError, ValueError):
        earlier = "unreadable"
    if earlier == new_final_id:
        return None
    from edgekd.fsio import fsync_path, utc_stamp

    dest = run_dir / HISTORY / f"{utc_stamp()}-{earlier}"
    dest.mkdir(parents=True)
    for name in reversed(REPORT_ITEMS):  # report.json last: a kill half way leaves it in the run to retry
        if (run_dir / name).exists():
            os.replace(run_dir / name, dest / name)
    fsync_path(dest)
    fsync_path(run_dir)
    return dest
