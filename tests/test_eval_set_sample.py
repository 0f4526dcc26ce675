"""The eval set shipped for devices (eval_set.npz) is a capped, stratified, seeded sample of the test split, and
says so: in itself, in the bench manifest, in bundle.json and the model card, and in `edgekd bench BUNDLE`. The
run's verdict and report stay on the whole test split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgekd.preprocess import eval_sample, read_eval_sample, read_eval_set, sample_text, write_eval_set

ROOT = Path(__file__).resolve().parents[1]
NAMES = [f"c{i}" for i in range(5)]


def _labels() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.permutation(np.repeat(np.arange(5), [400, 300, 200, 70, 30]))  # 1,000 images, unbalanced


def test_cap_keeps_each_class_share_and_is_reproducible():
    labels = _labels()
    idx, facts = eval_sample(labels, 100, NAMES)
    assert len(idx) == 100 == facts["images"] and facts["of"] == 1000 and facts["cap"] == 100
    assert np.all(np.diff(idx) > 0)  # distinct rows, in split order
    assert facts["per_class"] == {"c0": 40, "c1": 30, "c2": 20, "c3": 7, "c4": 3}
    assert np.bincount(labels[idx], minlength=5).tolist() == [40, 30, 20, 7, 3]
    again, _ = eval_sample(labels, 100, NAMES)
    np.testing.assert_array_equal(idx, again)
    other, _ = eval_sample(labels, 100, NAMES, seed=1)
    assert not np.array_equal(idx, other)  # the seed draws the rows, not the counts
    assert facts["seed"] == 0 and "stratified" in facts["method"]


def test_largest_remainder_rounding_adds_up_to_the_cap():
    labels = _labels()
    for size in (1, 7, 33, 999):
        idx, facts = eval_sample(labels, size, NAMES)
        counts = np.bincount(labels[idx], minlength=5)
        assert len(idx) == size == sum(facts["per_class"].values())
        share = np.bincount(labels, minlength=5) * size / len(labels)
        assert np.all(np.abs(counts - share) < 1), (size, counts, share)


@pytest.mark.parametrize("size", [0, 1000, 5000])
def test_zero_or_a_cap_above_the_split_keeps_the_whole_split(size):
    labels = _labels()
    idx, facts = eval_sample(labels, size, NAMES)
    np.testing.assert_array_equal(idx, np.arange(1000))
    assert facts["images"] == facts["of"] == 1000 and facts["method"] == "the whole test split"
    assert sample_text(facts) == "all 1,000 images of the test split"


def test_the_eval_set_file_records_its_sample(tmp_path):
    from edgekd.manifest import Preprocessing

    labels = _labels()
    images = np.random.default_rng(0).integers(0, 255, (1000, 1, 4, 4), dtype=np.uint8)
    pre = Preprocessing(input_size=(4, 4), channels=1, mean=[0.5], std=[0.5], class_names=NAMES)
    idx, facts = eval_sample(labels, 50, NAMES)
    write_eval_set(tmp_path / "eval_set.npz", images[idx], labels[idx], pre, facts, idx)
    got_images, got_labels, _ = read_eval_set(tmp_path / "eval_set.npz")
    np.testing.assert_array_equal(got_images, images[idx])
    assert read_eval_sample(tmp_path / "eval_set.npz") == facts
    with np.load(tmp_path / "eval_set.npz") as z:
        np.testing.assert_array_equal(z["indices"], idx)
    assert sample_text(facts) == ("a sample of 50 of the 1,000 test images (stratified by class, seed 0), not the "
                                  "full test split")
    write_eval_set(tmp_path / "old.npz", images, labels, pre)  # an eval set written before samples were recorded
    assert read_eval_sample(tmp_path / "old.npz") is None


def test_readme_documents_the_flag():
    text = " ".join((ROOT / "README.md").read_text().split())
    assert "at most `--eval-set-size` images (default 2,000; 0 = the whole split)" in text


def test_the_option_reaches_the_bench_stage():
    from edgekd.plan import CompressOptions, build_specs
    from edgekd.targets import load_target

    pytest.importorskip("torch")
    assert CompressOptions().eval_set_size == 2000
    specs = build_specs(CompressOptions(eval_set_size=120, student="small_cnn"), load_target("intel-cpu"), 1, (8, 8))
    assert next(s for s in specs if s.name == "bench").config.eval_set_size == 120


@pytest.fixture(scope="module")
def sampled_run(tiny_run, tmp_path_factory) -> Path:
    """A copy of the tiny run rerun with --eval-set-size 100 (only the bench stage reruns), and its bundle."""
    import edgekd
    from tests.conftest import TINY

    run_dir = tmp_path_factory.mktemp("sampled") / "run"
    shutil.copytree(tiny_run, run_dir)
    edgekd.compress(**TINY, eval_set_size=100, run_dir=run_dir, bundle=True)
    return run_dir


def _bench_dir(run_dir: Path) -> Path:
    report = json.loads((run_dir / "report.json").read_text())
    return run_dir / next(s["dir"] for s in report["stages"] if s["stage"] == "bench")


def test_run_ships_a_sample_and_judges_on_the_whole_test_split(tiny_run, sampled_run):
    from edgekd.manifest import load_manifest

    report = json.loads((sampled_run / "report.json").read_text())
    assert [s["stage"] for s in report["stages"] if not s["reused"]] == ["bench"]
    bench = load_manifest(_bench_dir(sampled_run))
    full = report["data"]["splits"]["test"]["images"]
    images, labels, _ = read_eval_set(_bench_dir(sampled_run) / "eval_set.npz")
    assert len(labels) == 100 < full
    sample = read_eval_sample(_bench_dir(sampled_run) / "eval_set.npz")
    assert sample["images"] == 100 and sample["of"] == full and bench.metrics["eval_set"] == sample
    facts = bench.artifact("eval_set").facts
    assert facts["images"] == 100 and facts["of"] == full and facts["seed"] == 0 and "stratified" in facts["method"]
    assert sorted(set(labels.tolist())) == list(range(10))  # every digit kept its share
    # the verdict and the report stay on the whole test split: the same figures as the uncapped run
    tiny = json.loads((tiny_run / "report.json").read_text())
    assert [r["top1"] for r in report["models"]] == [r["top1"] for r in tiny["models"]]
    accuracy = lambda r: [(b["limit"], b["value"]) for b in r["budgets"] if "top-1" in b["name"]]  # noqa: E731
    assert accuracy(report) and accuracy(report) == accuracy(tiny)
    assert bench.metrics["per_class"]["images"] == full
    assert "holds a sample of 100 of the" in report["methodology"]


def test_bundle_and_device_bench_say_they_are_on_the_sample(sampled_run):
    from edgekd.benchmark import run_bench
    from edgekd.bundle.verify import load_bundle

    folder = sampled_run / "bundle"
    b = load_bundle(folder)
    assert b.verification["passed"], b.verification
    assert b.eval_set_sample["images"] == 100 and b.eval_set_sample["of"] > 100
    assert b.verification["eval_images"] == 100
    card = " ".join((folder / "model_card.md").read_text().split())
    assert (f"eval_set.npz, which holds a sample of 100 of the {b.eval_set_sample['of']:,} test images (stratified "
            "by class, seed 0)") in card
    int8 = next(a for a in b.artifacts if a.name == "student_int8_qdq")
    # the bundle's own top-1 and the run's bench top-1 on the same 100 images agree (same ONNX on ONNX Runtime)
    assert int8.verified["top1_in_run_bench_on_eval_set"] is not None
    ov = next(a for a in b.artifacts if a.name == "student_int8_openvino")  # the run's bench ran this IR too
    assert abs(ov.top1 - ov.verified["top1_in_run_bench_on_eval_set"]) < 1e-9
    report = run_bench(folder, "intel-cpu", "student_int8")
    assert report["row"]["top1_on"].startswith("a sample of 100 of the")
    assert report["eval_set_sample"]["images"] == 100
    assert any("the run's own verdict is on the whole test split" in n for n in report["notes"])
    accuracy = next(x for x in report["budgets"] if x["name"] == "accuracy (top-1)")
    assert accuracy["basis"].endswith(f"on 100 of {b.eval_set_sample['of']:,} test images (eval-set sample)")
