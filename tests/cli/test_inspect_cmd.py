"""`edgekd inspect` output as CI logs and `| less` read it: whole (never cut at 80 columns), user text as typed
(no emoji codes, no rich markup), the INT8 verdict of each artifact named. Bundles from tiny exported nets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekd.cli.app import _register, app

sys.path.insert(0, str(Path(__file__).parent))
from test_bad_inputs import fake_bundle  # noqa: E402
from test_bench_cmd import build_run  # noqa: E402

_register()
runner = CliRunner()
LONG = "a-class-name-long-enough-to-be-cut-" * 4 + "END"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return build_run(tmp_path_factory.mktemp("inspect") / "run")


def test_long_fields_printed_whole_when_not_a_terminal(run: Path, tmp_path: Path) -> None:
    bundle = fake_bundle(tmp_path / "digits-intel-cpu", run, long_class=LONG)
    res = runner.invoke(app, ["inspect", str(bundle)])
    assert res.exit_code == 0, res.output
    assert len(LONG) > 120 and LONG in res.stdout  # CliRunner's stdout is not a TTY
    assert "# Model card: digits-intel-cpu" in res.stdout


def test_user_text_is_printed_as_typed(run: Path, tmp_path: Path) -> None:
    bundle = fake_bundle(tmp_path / "b", run, long_class="a:b:c [red]x[/red] :thumbs_up:")
    res = runner.invoke(app, ["inspect", str(bundle)])
    assert res.exit_code == 0, res.output
    assert "a:b:c [red]x[/red] :thumbs_up:" in res.stdout and "🅱" not in res.stdout and "👍" not in res.stdout


def test_inspect_names_float_layers_of_a_mixed_precision_artifact(run: Path, tmp_path: Path) -> None:
    verified = {"loaded_and_run": True, "passed": True,
                "integer": {"ok": True, "summary": "INT8 except 2 layer(s) in FP32: features.0, fc",
                            "weighted_ops": 3, "weighted_ops_int8": 1}}
    res = runner.invoke(app, ["inspect", str(fake_bundle(tmp_path / "b", run, int8_verified=verified))])
    assert res.exit_code == 0, res.output
    assert "student_int8_qdq: INT8 except 2 layer(s) in FP32: features.0, fc" in res.stdout
    assert "passed; INT8 except 2 layer(s) in FP32: features.0, fc" in res.stdout  # the card's verification table


def test_console_width_off_a_terminal(monkeypatch) -> None:
    import io

    from edgekd.cli.common import _width

    monkeypatch.delenv("COLUMNS", raising=False)
    assert _width(io.StringIO()) == 200
    monkeypatch.setenv("COLUMNS", "132")
    assert _width(io.StringIO()) == 132


def test_bundle_named_after_the_run(tmp_path: Path) -> None:
    from edgekd.bundle.build import _name
    from edgekd.bundle.run_info import RunView

    view = RunView(run_dir=tmp_path / "cifar10-intel-cpu", report={})
    assert _name(view, tmp_path / "cifar10-intel-cpu" / ".bundle.tmp-123") == "cifar10-intel-cpu"
    assert _name(view, tmp_path / ".my-bundle.tmp-123") == "my-bundle"
