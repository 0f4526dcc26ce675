"""An exception edgekd did not expect: exit 4 (never 1, which means "a budget failed"), one line on stderr
naming a log file that holds the full traceback, in the run directory when the command has one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekd.cli import app as app_module
from edgekd.cli.app import _register, app
from edgekd.errors import EXIT_INTERNAL

_register()
runner = CliRunner()

LINE = re.compile(r"^internal error: (?P<what>.+) \(traceback: (?P<path>.+)\); please report it$")


def _one_line(result) -> tuple[str, Path]:
    assert result.exit_code == EXIT_INTERNAL == 4, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    match = LINE.match(lines[0])
    assert match, lines[0]
    return match["what"], Path(match["path"])


def test_compress_crash_writes_the_traceback_into_the_run_directory(tmp_path, monkeypatch):
    import edgekd.data.dataset as dataset

    def boom(*_args, **_kwargs):
        raise RuntimeError("kaboom: a:b:c [red]not markup[/]")

    monkeypatch.setattr(dataset, "load_data", boom)
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["compress", "--run-dir", str(run_dir), "-q"])
    what, log = _one_line(result)
    assert what == "RuntimeError: kaboom: a:b:c [red]not markup[/]"  # no rich markup or emoji applied
    assert log.parent == run_dir.resolve() / "logs" and log.name.startswith("edgekd-") and log.suffix == ".log"
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "in boom" in text and "RuntimeError: kaboom" in text
    assert "command:" in text


def test_a_command_without_run_directory_logs_to_the_user_cache(tmp_path, monkeypatch):
    import edgekd.cli.targets_cmd as targets_cmd

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(targets_cmd, "load_target", lambda *a, **k: 1 / 0)
    result = runner.invoke(app, ["targets", "intel-cpu"])
    what, log = _one_line(result)
    assert what.startswith("ZeroDivisionError: division by zero")
    assert log.parent == tmp_path / "cache" / "edgekd" / "logs"
    assert "ZeroDivisionError" in log.read_text()


def test_an_unwritable_run_directory_falls_back_to_another_log_folder(tmp_path, monkeypatch):
    import edgekd.data.dataset as dataset

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(dataset, "load_data", lambda *a, **k: (_ for _ in ()).throw(OSError("disk on fire")))
    run = tmp_path / "run"
    run.mkdir()
    not_a_dir = run / "logs"  # RUN/logs cannot be made: a file sits where the folder would go
    not_a_dir.write_text("x")
    result = runner.invoke(app, ["compress", "--run-dir", str(run), "-q"])
    what, log = _one_line(result)
    assert what == "OSError: disk on fire" and log.parent == tmp_path / "cache" / "edgekd" / "logs"
    assert not_a_dir.read_text() == "x"


def test_user_errors_and_budget_exits_are_not_turned_into_internal_errors(tmp_path):
    result = runner.invoke(app, ["compress", "--target", "jetsn", "--run-dir", str(tmp_path / "r"), "-q"])
    assert result.exit_code == 2 and "internal error" not in result.output
    assert not (tmp_path / "r" / "logs").exists()


def test_a_crash_outside_any_command_exits_4(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def broken_register() -> None:
        raise ImportError("half-installed package")

    monkeypatch.setattr(app_module, "_register", broken_register)
    with pytest.raises(SystemExit) as exc:
        app_module.main()
    assert exc.value.code == EXIT_INTERNAL
    logs = list((tmp_path / "cache" / "edgekd" / "logs").glob("edgekd-*.log"))
    assert len(logs) == 1 and "half-installed package" in logs[0].read_text()
