"""What every command shares: the console, one-line errors with exit codes, JSON output."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

import typer
import typer.exceptions
from rich.console import Console

from edgekd.errors import EXIT_INTERNAL, EdgekdError

def _width(stream: Any) -> int | None:
    """None (follow the terminal) on a TTY; otherwise $COLUMNS or 200, so that tables and the model card are
    not cut at rich's default 80 columns in CI logs, files and `| less`."""
    try:
        if stream.isatty():
            return None
    except (AttributeError, ValueError):
        pass
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else 200


# User text (paths, names, messages) prints as typed: emoji=False (`a:b:c` is not `a🅱c`) and markup=False (a
# `[x]` in a file name is not a style; table cells included); a print that styles passes markup=True and
# escapes every user value in it (rich.markup.escape).
console = Console(stderr=False, highlight=False, soft_wrap=True, emoji=False, markup=False, width=_width(sys.stdout))
err_console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False, markup=False, width=_width(sys.stderr))


def fail(message: str, code: int) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code)


_RUN_DIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar("edgekd_run_dir", default=None)


def set_run_dir(path: Path | None) -> None:
    """Say which run directory the running command works in: an internal error's traceback goes to its logs/."""
    _RUN_DIR.set(Path(path) if path is not None else None)


def _log_folders() -> list[Path]:
    """Where a traceback may go, best first: the run directory, the user's cache, the temp folder."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    run = _RUN_DIR.get()
    return ([run / "logs"] if run is not None else []) + [cache / "edgekd" / "logs",
                                                          Path(tempfile.gettempdir()) / "edgekd-logs"]


def write_traceback(exc: BaseException) -> Path | None:
    """Write the full traceback (with version, command line and time) to a new log file; its path, or None."""
    from edgekd import __version__

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    text = (f"edgekd {__version__}, Python {sys.version.split()[0]}, pid {os.getpid()}, {stamp}\n"
            f"command: {' '.join(sys.argv)}\n\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    for folder in _log_folders():
        path = folder / f"edgekd-{stamp}-{os.getpid()}.log"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with open(path, "x", encoding="utf-8") as fh:  # never overwrite another process's log
                fh.write(text)
            return path
        except OSError:
            continue
    return None


def internal_error(exc: BaseException) -> typer.Exit:
    """An exception edgekd did not expect: traceback to a log file, one line on stderr, exit 4."""
    path = write_traceback(exc)
    first = (str(exc).strip().splitlines() or [""])[0]
    what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    where = f"traceback: {path}" if path else "no log folder was writable; traceback below"
    err_console.print(f"[bold red]internal error:[/] {_escape(what)} ({_escape(where)}); please report it",
                      markup=True, highlight=False, emoji=False)
    if path is None:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    return typer.Exit(EXIT_INTERNAL)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One line on stderr and a documented exit code for every failure; never a bare traceback.

    EdgekdError: its message and exit code (2 unless it says otherwise). Any other exception is an internal
    error: exit 4, its traceback written to ``<run dir>/logs/`` when the command called :func:`set_run_dir`
    (else the user's cache or the temp folder). typer's exits, aborts and usage errors pass through unchanged.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = _RUN_DIR.set(None)
        try:
            return fn(*args, **kwargs)
        except EdgekdError as exc:
            raise fail(_escape(str(exc)), exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted: finished stages are kept; rerun the same command to resume", 130) from None
        except (typer.Exit, typer.Abort, typer.exceptions.TyperException):
            raise
        except Exception as exc:  # noqa: BLE001 - the one place that turns any crash into exit 4
            raise internal_error(exc) from None
        finally:
            _RUN_DIR.reset(token)

    return wrapper


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text.splitlines()[0] if text else "failed")


def _writes_to_stdout(stream: Any) -> bool:
    if stream is sys.stdout or stream is sys.__stdout__:
        return True
    try:
        return stream.fileno() == 1
    except (AttributeError, OSError, ValueError):
        return False


@contextlib.contextmanager
def stdout_to_stderr(enabled: bool = True) -> Iterator[None]:
    """While inside, whatever would reach stdout goes to stderr, so that stdout can hold one JSON document.

    Covers Python prints and rich consoles (``sys.stdout`` redirected), logging handlers bound to stdout
    (NNCF's logger holds its own ``StreamHandler(sys.stdout)``), and native code writing to file descriptor 1.
    """
    if not enabled:
        yield
        return
    import logging

    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    handlers = {h for lg in loggers for h in lg.handlers if type(h) is logging.StreamHandler
                and _writes_to_stdout(h.stream)}
    sys.stdout.flush()
    try:
        saved_fd = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no file descriptor 1 (an embedding host): the Python-level redirect still holds
        saved_fd = None
    previous = {h: h.setStream(sys.stderr) for h in handlers}
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for h, stream in previous.items():
            h.setStream(stream)
        sys.stderr.flush()
        if saved_fd is not None:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
