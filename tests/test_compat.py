"""Packages whose private parts edgekd touches are bounded: pyproject, constraints.txt and edgekd.compat agree,
and an installed version outside the tested range stops with one line (edgekd.compat.check_tested)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from edgekd import compat
from edgekd.errors import UntestedDependency

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out: dict[str, list[str]] = {}
    for req in project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]:
        name, spec = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", req.split(";")[0]).groups()
        out.setdefault(name.lower(), []).append(spec.replace(" ", ""))
    return out


def test_pyproject_bounds_every_patched_package_to_the_tested_range():
    reqs = _requirements()
    for dist, (low, high, _) in compat.TESTED.items():
        assert dist in reqs, dist
        for spec in reqs[dist]:
            pins = re.findall(r"==([\d.]+)", spec)
            if pins:
                assert all(compat.release(low) <= compat.release(p) < compat.release(high) for p in pins), spec
            else:
                assert f"<{high}" in spec.split(","), f"{dist}: {spec} lacks the upper bound <{high}"


def test_constraints_pin_tested_versions_and_ci_installs_with_them():
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "constraints.txt").read_text(), re.M))
    for dist, (low, high, _) in compat.TESTED.items():
        assert compat.release(low) <= compat.release(pins[dist]) < compat.release(high), dist
    installs = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if "pip install" in line and "-e" in line]
    assert installs and all("-c constraints.txt" in line for line in installs)


def test_an_untested_version_is_refused_in_one_line(monkeypatch):
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda d: "3.5.0" if d == "nncf" else real(d))
    monkeypatch.delenv(compat.ALLOW_ENV, raising=False)
    with pytest.raises(UntestedDependency) as exc:
        compat.check_tested("nncf")
    line = str(exc.value)
    assert "\n" not in line and "nncf 3.5.0" in line and "pip install 'nncf>=2.16,<3.5'" in line
    assert "_loaded_namespace" in line and exc.value.exit_code == 2


def test_allow_untested_warns_once_and_goes_on(monkeypatch, capsys):
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda d: "0.20.1" if d == "torchao" else real(d))
    monkeypatch.setenv(compat.ALLOW_ENV, "1")
    monkeypatch.setattr(compat, "_warned", set())
    compat.check_tested("torchao")
    compat.check_tested("torchao")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: torchao 0.20.1 is outside")


def test_the_tested_versions_and_a_missing_package_pass(monkeypatch):
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda d: {"nncf": "3.4.0", "torchao": "0.18.0+cu130"}.get(d) or real(d))
    compat.check_tested("nncf")
    compat.check_tested("torchao")

    def missing(d):
        raise metadata.PackageNotFoundError(d)

    monkeypatch.setattr(metadata, "version", missing)
    compat.check_tested("executorch")
