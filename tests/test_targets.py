"""Target profiles: every shipped YAML validates; bad fields and impossible precisions are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgekd.errors import UsageError
from edgekd.targets import available_targets, load_target

ROOT = Path(__file__).resolve().parents[1]


def test_required_targets_ship():
    assert {"intel-cpu", "cpu-ort", "jetson"} <= set(available_targets())


@pytest.mark.parametrize("name", sorted(available_targets()))
def test_every_profile_loads_and_sources_its_budgets(name):
    prof = load_target(name)
    assert prof.budgets.model_class
    assert "latency_ms" in prof.sources or prof.budgets.latency_ms is None


def _write(tmp_path, mutate) -> Path:
    data = yaml.safe_load((ROOT / "targets" / "intel-cpu.yaml").read_text())
    mutate(data)
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_field_is_named(tmp_path):
    path = _write(tmp_path, lambda d: d["budgets"].update(latncy_ms=3))
    with pytest.raises(UsageError, match=r"unknown field 'budgets.latncy_ms'"):
        load_target(str(path))


def test_old_profile_with_fallback_precision_loads_with_a_warning(tmp_path, capfd):
    """fallback_precision never had an effect and left the schema; an older profile that sets it still loads,
    to the same profile, and the user is told to delete the line (not silently ignored)."""
    from pydantic import ValidationError

    from edgekd.targets import TargetProfile

    from edgekd.targets import available_targets, load_target_file

    path = _write(tmp_path, lambda d: d.update(fallback_precision="fp16"))
    shipped = load_target_file(available_targets()["intel-cpu"], overlay=False)  # the copy has no calibration/ beside it
    assert load_target(str(path)) == shipped
    err = capfd.readouterr().err
    assert "warning:" in err and "'fallback_precision' is ignored" in err and "delete it" in err
    with pytest.raises(ValidationError):  # the schema itself has no such field
        TargetProfile.model_validate({**load_target("intel-cpu").model_dump(), "fallback_precision": "fp16"})


def test_precision_the_runtime_cannot_run(tmp_path):
    def mutate(d):
        d["runtime"]["device"] = "NPU"
        d["precisions_allowed"] = ["int8", "fp32"]

    with pytest.raises(UsageError, match="cannot run fp32"):
        load_target(str(_write(tmp_path, mutate)))


def test_yaml_is_read_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_target(str(path))


def test_unknown_name_suggests():
    with pytest.raises(UsageError, match="did you mean intel-cpu"):
        load_target("intel-cpv")


def test_a_copied_targets_folder_gives_the_same_profile(tmp_path):
    """The profile (with its calibration overlay) is part of stage configs: a checkout in another folder must
    give the same one, or every search/compile/bench stage of a copied run would rerun."""
    import shutil

    from edgekd.targets import available_targets, load_target_file

    here = available_targets()["intel-cpu"]
    copy = tmp_path / "targets"
    shutil.copytree(here.parent, copy)
    ours, theirs = load_target_file(here), load_target_file(copy / here.name)
    assert ours.calibration is not None and ours.calibration["file"] == "calibration/intel-cpu.yaml"
    assert ours.model_dump() == theirs.model_dump()
