"""Errors that reach the user as one actionable line and a documented exit code.

Exit codes (everywhere): 0 every measured budget holds; 1 a measured budget or accuracy floor fails;
2 bad usage or input (including a missing optional package); 3 inconclusive (gate only); 4 internal error
(an exception edgekd did not expect: one line on stderr naming the log file that holds the traceback, see
edgekd.cli.common.guarded). A crash never exits 1, so CI can tell "too slow" from "the tool broke".
"""

from __future__ import annotations

import importlib
from types import ModuleType

EXIT_OK = 0
EXIT_BUDGET_FAILED = 1
EXIT_USAGE = 2
EXIT_INCONCLUSIVE = 3
EXIT_INTERNAL = 4


class EdgekdError(Exception):
    """An error with a one-line, actionable message; the CLI prints it and exits with `exit_code`."""

    exit_code: int = EXIT_USAGE

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(EdgekdError):
    """Bad usage or bad input (exit 2)."""


class MissingExtra(EdgekdError):
    """An optional package is needed and absent (exit 2); the message names the extra to install."""

    def __init__(self, package: str, extra: str, why: str = "") -> None:
        reason = f" ({why})" if why else ""
        super().__init__(
            f"the package '{package}' is not installed{reason}: install it with "
            f"pip install 'edgekd[{extra}]'"
        )
        self.package = package
        self.extra = extra


class StageFailed(EdgekdError):
    """A stage could not do its job for a reason the user can act on (exit 2 unless said otherwise)."""


class UntestedDependency(EdgekdError):
    """An installed package whose private parts edgekd uses is outside the versions it is tested with (exit 2;
    edgekd.compat)."""


def require(module: str, extra: str, why: str = "") -> ModuleType:
    """Import an optional module or raise MissingExtra naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise
        raise MissingExtra(top, extra, why) from None
