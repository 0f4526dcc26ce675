"""A copy of the same image folder (new modification times: unzipped, cloned, copied without -p) trains the same
weights: the stages are seeded from the data without its file times, while the image cache and the stage ids
still change with them (an edited file reruns what read it)."""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tests.cli.test_eval_cmd import _photos  # noqa: E402


def _copy_with_new_times(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)  # copy2 keeps the times: give the copy others, as an unzip or a clone would
    for f in dst.rglob("*"):
        os.utime(f, ns=(1_700_000_000 * 10**9,) * 2)
    return dst


def _dataset(root: Path, cache: Path):
    from edgekd.data.dataset import DataConfig, load_data

    return load_data(DataConfig(source=str(root), input_size=(32, 32)), cache)


def test_a_copy_with_new_times_has_another_fingerprint_and_the_same_seed(tmp_path):
    _photos(tmp_path / "a", n_train=8, n_test=3)
    b = _copy_with_new_times(tmp_path / "a", tmp_path / "b")
    da, db = _dataset(tmp_path / "a", tmp_path / "ca"), _dataset(b, tmp_path / "cb")
    assert da.fingerprint != db.fingerprint  # the cache and the stage ids see the new times
    assert da.seed_key() == db.seed_key() and da.seed_key() != da.fingerprint
    victim = next((b / "train").rglob("*.png"))
    victim.write_bytes(victim.read_bytes() + b"\0")  # another size: other data, another seed
    assert _dataset(b, tmp_path / "cb2").seed_key() != da.seed_key()


def _teacher_weights(data: Path, run_dir: Path) -> dict:
    from rich.console import Console

    from edgekd.data.dataset import load_data
    from edgekd.pipeline import run_pipeline
    from edgekd.plan import build_specs, validate_options
    from edgekd.runner import data_config
    from edgekd.targets import load_target

    opts = validate_options(dict(data=str(data), teacher="cifar_resnet20", source_classes=3, transfer="none",
                                 teacher_epochs=1, student="small_cnn", input_size=[32, 32], batch_size=8))
    target = load_target(opts.target)
    load = functools.lru_cache(maxsize=1)(lambda: load_data(data_config(opts, target), run_dir / ".cache"))
    specs = build_specs(opts, target, 3, (32, 32))[:1]
    [teacher] = run_pipeline(specs, run_dir, fingerprint=lambda: load().fingerprint, seed_fingerprint=load().seed_key,
                             data_loader=load, console=Console(quiet=True), progress=None)
    return torch.load(teacher.stage_dir / "model.pt", weights_only=True)


def test_the_same_folder_copied_trains_the_same_teacher(tmp_path):
    _photos(tmp_path / "a", n_train=8, n_test=3)
    b = _copy_with_new_times(tmp_path / "a", tmp_path / "b")
    wa, wb = _teacher_weights(tmp_path / "a", tmp_path / "ra"), _teacher_weights(b, tmp_path / "rb")
    sa, sb = wa.get("state_dict", wa), wb.get("state_dict", wb)
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa if isinstance(sa[k], torch.Tensor))
