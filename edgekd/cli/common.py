"""What every command shares: the console, one-line errors with exit codes, JSON output."""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any, Callable

import typer
from rich.console import Console

from edgekd.errors import EdgekdError

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


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn EdgekdError into one line on stderr and its exit code; never a traceback for bad input."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EdgekdError as exc:
            raise fail(_escape(str(exc)), exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted: finished stages are kept; rerun the same command to resume", 130) from None

    return wrapper


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text.splitlines()[0] if text else "failed")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
