"""Bad input-size options on the command line (--input-size against a pinned target, --student-input-size,
--search-resolutions): one line naming the option and the size, exit 2, and no stage folder written. Nothing
trains: each is refused before the first stage (a tiny generated photo folder of 64x64 images)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from edgekd.cli.app import _register, app
from tests.cli.test_eval_cmd import _photos

pytest.importorskip("torch")
_register()
runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def photos64(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("p64") / "data"
    _photos(data, n_train=4, n_test=2, sides=(64, 65))  # every image 64x64: the data's size is 64x64
    return data


def _refused(args: list[str], run: Path, *needles: str) -> str:
    result = runner.invoke(app, ["compress", *args, "--run-dir", str(run), "-q", "--threads", "1"])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    stages = [p.name for p in run.iterdir() if not p.name.startswith(".")] if run.exists() else []
    assert stages == [], stages  # no stage folder (a data cache may be there)
    return lines[0]


def _pinned(tmp_path: Path) -> Path:
    """targets/intel-cpu.yaml pinning a 32x32 input."""
    raw = yaml.safe_load((ROOT / "targets" / "intel-cpu.yaml").read_text())
    raw.update(name="pinned-cpu", input_size=[32, 32])
    target = tmp_path / "pinned.yaml"
    target.write_text(yaml.safe_dump(raw))
    return target


def test_input_size_disagreeing_with_a_pinned_target(tmp_path):
    target = _pinned(tmp_path)
    _refused(["--target", str(target), "--input-size", "48x48", "--student", "small_cnn"], tmp_path / "run",
             "--input-size 48x48 disagrees with target pinned-cpu", "pins 32x32")


def test_student_input_size_disagreeing_with_a_pinned_target(tmp_path):
    target = _pinned(tmp_path)
    _refused(["--target", str(target), "--student-input-size", "24x24", "--student", "small_cnn"], tmp_path / "run",
             "--student-input-size 24x24 disagrees with target pinned-cpu", "32x32")


def test_a_pinned_target_gives_the_search_no_smaller_sizes(tmp_path):
    from edgekd.plan import validate_options
    from edgekd.search.budget import search_config
    from edgekd.targets import load_target

    target = _pinned(tmp_path)
    opts = validate_options({"target": str(target)})
    assert search_config(opts, load_target(str(target)), {}, {})["resolutions"] == []
    assert search_config(opts, load_target("intel-cpu"), {}, {})["resolutions"] == [0.75, 0.5]


def test_student_input_size_larger_than_the_data(photos64, tmp_path):
    _refused(["--data", str(photos64), "--student", "small_cnn", "--student-input-size", "96x64"],
             tmp_path / "run", "--student-input-size 96x64 is larger than the teacher's 64x64")


def test_student_input_size_below_32_px(photos64, tmp_path):
    _refused(["--data", str(photos64), "--student", "small_cnn", "--student-input-size", "16x16"],
             tmp_path / "run", "--student-input-size 16x16", "32 px on the shorter side")


def test_student_input_size_of_other_proportions_than_the_data(photos64, tmp_path):
    """A 32x48 student of 64x64 data would train on the whole image scaled down but be judged (and deployed) on
    the files resized to 32 px and cropped 48 px wide: another picture."""
    _refused(["--data", str(photos64), "--student", "small_cnn", "--student-input-size", "32x48"],
             tmp_path / "run", "--student-input-size 32x48 does not keep the data's 64x64 proportions", "32x32")


def test_student_input_size_proportions_allow_rounding():
    from types import SimpleNamespace

    from edgekd.manifest import Preprocessing
    from edgekd.search.resolution import check_resolution_options

    pre = Preprocessing(input_size=(64, 85), channels=3, mean=[0.0] * 3, std=[1.0] * 3, resize_shorter=64,
                        class_names=["a", "b"])
    for size in ((32, 43), (32, 42), (48, 64), (64, 85)):  # 85/2 = 42.5 rounds either way
        check_resolution_options(SimpleNamespace(student_input_size=size, student="small_cnn"), pre)
    with pytest.raises(Exception, match="proportions"):
        check_resolution_options(SimpleNamespace(student_input_size=(32, 32), student="small_cnn"), pre)


def test_default_scales_on_32_px_photos_are_no_error():
    """The default --search-resolutions (0.75, 0.5) on CIFAR-sized photos would go below 32 px: they give no
    smaller size, silently; only scales the user gives are refused (a bench run on CIFAR-10-JPEG found it)."""
    from edgekd.manifest import Preprocessing
    from edgekd.plan import validate_options
    from edgekd.search.resolution import check_resolution_options, student_sizes

    pre = Preprocessing(input_size=(32, 32), channels=3, mean=[0.0] * 3, std=[1.0] * 3, resize_shorter=32,
                        class_names=["a", "b"])
    opts = validate_options({})
    check_resolution_options(opts, pre)
    assert student_sizes(pre, opts.search_resolutions) == []
    with pytest.raises(Exception, match="at least 1.00"):
        check_resolution_options(validate_options({"search_resolutions": [0.5]}), pre)


def test_student_input_size_on_arrays(tmp_path):
    _refused(["--data", "digits", "--student", "small_cnn", "--student-input-size", "4x4"], tmp_path / "run",
             "--student-input-size 4x4", "arrays", "cannot be decoded at another size")


def test_student_input_size_with_student_auto(photos64, tmp_path):
    pytest.importorskip("torch_pruning")
    _refused(["--data", str(photos64), "--student", "auto", "--student-input-size", "32x32"], tmp_path / "run",
             "--student-input-size", "--student auto", "--search-resolutions")


def test_search_resolution_below_32_px_names_the_floor(photos64, tmp_path):
    pytest.importorskip("torch_pruning")
    _refused(["--data", str(photos64), "--student", "auto", "--search-resolutions", "0.75",
              "--search-resolutions", "0.1"], tmp_path / "run",
             "--search-resolutions 0.1 gives 6x6 px from the data's 64x64", "32 px", "at least 0.50")


def test_search_resolution_above_1(photos64, tmp_path):
    pytest.importorskip("torch_pruning")
    _refused(["--data", str(photos64), "--student", "auto", "--search-resolutions", "1.5"], tmp_path / "run",
             "--search-resolutions 1.5", "(0, 1]")
