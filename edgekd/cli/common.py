"""What every command shares: the console, one-line errors with exit codes, JSON output."""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable

import typer
from rich.console import Console

from edgekd.errors import EdgekdError

console = Console(stderr=False, highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


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
