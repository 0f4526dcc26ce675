"""Flags and options cannot drift: every CompressOptions field is one `compress` flag (and one YAML key), every
option flag is a field, the README names only flags that exist, and every `--flag` a message names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import typer
from typer.core import TyperOption
from typer.testing import CliRunner

from edgekd.cli.app import _register, app
from edgekd.cli.compress import RUN_CONTROL
from edgekd.cli.options import flag_name
from edgekd.plan import CompressOptions

ROOT = Path(__file__).resolve().parents[2]
FLAG = re.compile(r"(?<![\w-])--[a-z](?:[a-z0-9-]*[a-z0-9])?(?![\w-])")
# flags of other programs that edgekd's messages name (trtexec, nvidia-smi, torchrun)
EXTERNAL = {"--fp16", "--int8", "--format", "--id", "--query-gpu", "--nproc-per-node"}

_register()


def _commands() -> dict[str, dict[str, TyperOption]]:
    group = typer.main.get_command(app)
    out = {}
    for name, cmd in group.commands.items():
        out[name] = {o: p for p in cmd.params if isinstance(p, TyperOption) for o in (*p.opts, *p.secondary_opts)}
    return out


COMMANDS = _commands()
ALL_FLAGS = {f for opts in COMMANDS.values() for f in opts} | {"--help", "--version"}


def test_every_option_field_has_exactly_its_flag():
    opts = COMMANDS["compress"]
    for name in CompressOptions.model_fields:
        assert flag_name(name) in opts, f"CompressOptions.{name} has no flag {flag_name(name)}"
        assert opts[flag_name(name)].name == name


def test_every_compress_flag_is_an_option_or_run_control():
    fields = set(CompressOptions.model_fields)
    for flag, param in COMMANDS["compress"].items():
        if flag in ("--help",):
            continue
        assert param.name in fields or param.name in RUN_CONTROL, f"{flag} is neither an option nor run control"
    assert not fields & set(RUN_CONTROL), "a run-control flag shadows an option"


def test_flags_that_were_yaml_only_and_the_weighting_knobs_exist():
    for flag in ("--split-seed", "--train-only", "--max-update-norm", "--ignore-layers", "--augment", "--opset",
                 "--weighting-tau", "--weighting-sign", "--attention-p", "-t", "-T"):
        assert flag in COMMANDS["compress"], flag
    assert COMMANDS["compress"]["--train-only"].multiple and COMMANDS["compress"]["--ignore-layers"].multiple
    assert "--no-cache-teacher" in COMMANDS["compress"]


def _code_snippets(text: str) -> list[str]:
    """Inline code spans, and the commands of indented code blocks (continuation lines joined, the description
    column after two spaces cut off)."""
    spans = [s.replace("\n", " ") for s in re.findall(r"`([^`]+)`", text)]
    commands: list[str] = []
    for line in text.splitlines():
        if not line.startswith("    "):
            continue
        cmd = re.split(r"\s{2,}", line.strip())[0]
        if cmd.startswith(("[", "--")) and commands:
            commands[-1] += " " + cmd
        else:
            commands.append(cmd)
    return spans + commands


def test_readme_names_only_flags_of_the_command_it_shows():
    text = (ROOT / "README.md").read_text()
    checked = 0
    for snippet in _code_snippets(text):
        for m in re.finditer(r"\bedgekd ([a-z][a-z-]*)((?:(?!\bedgekd ).)*)", snippet):
            cmd, rest = m.group(1), m.group(2)
            if cmd not in COMMANDS:
                continue
            for flag in FLAG.findall(rest):
                assert flag in COMMANDS[cmd] or flag == "--help", f"README: `edgekd {cmd}` has no flag {flag} ({snippet!r})"
                checked += 1
    assert checked > 20  # the parser found the README's commands
    for flag in set(FLAG.findall(text)):
        assert flag in ALL_FLAGS | EXTERNAL, f"README names {flag}, which no edgekd command has"


def _message_strings(tree: ast.AST) -> list[str]:
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def test_every_flag_a_message_names_exists():
    missing = []
    for path in sorted((ROOT / "edgekd").rglob("*.py")):
        for s in _message_strings(ast.parse(path.read_text())):
            missing += [f"{path.relative_to(ROOT)}: {f}" for f in FLAG.findall(s) if f not in ALL_FLAGS | EXTERNAL]
    assert not missing, "messages name flags that do not exist:\n" + "\n".join(missing)


@pytest.mark.parametrize("args, needle", [
    (["--weighting-tau", "0"], "option 'weighting_tau' (--weighting-tau): Input should be greater than 0"),
    (["--weighting-sign", "2"], "option 'weighting_sign' (--weighting-sign)"),
    (["--attention-p", "20"], "--attention-p"),
])
def test_new_flags_reach_the_validation(tmp_path, args, needle):
    result = CliRunner().invoke(app, ["compress", *args, "--run-dir", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").glob("*-*/manifest.json"))


def test_flags_and_yaml_give_the_same_options(tmp_path):
    """A flag and the same YAML key give one CompressOptions (the flag wins over the file)."""
    from edgekd.cli import compress as mod

    seen = []
    cfg = tmp_path / "p.yaml"
    cfg.write_text("weighting: teacher_confidence\nweighting_tau: 0.5\ntrain_only: ['fc.*']\nopset: 18\n")
    orig = mod.run_compress
    mod.run_compress = lambda opts, *a, **k: seen.append(opts) or 0
    try:
        runner = CliRunner()
        runner.invoke(app, ["compress", "--config", str(cfg)])
        runner.invoke(app, ["compress", "--weighting", "teacher_confidence", "--weighting-tau", "0.5",
                            "--train-only", "fc.*", "--opset", "18"])
        runner.invoke(app, ["compress", "--config", str(cfg), "--weighting-sign", "-1", "--no-cache-teacher"])
    finally:
        mod.run_compress = orig
    assert len(seen) == 3
    assert seen[0] == seen[1]
    assert seen[2].weighting_sign == -1 and seen[2].cache_teacher is False and seen[2].weighting_tau == 0.5
