"""The student search at smaller input sizes, on a tiny 64x64 photo folder: a candidate over the latency budget
at the data's size is copied and measured again at 48x48, then 32x32, until it fits; a shrunk candidate trains
its proxy on downscaled batches and is scored on val decoded at its size; the winner's size is the search
manifest's preprocessing and the distill stage trains the chosen student at it. And when nothing fits even at
the smallest size, the stage fails (exit 1) naming that size and the fastest candidate.

Latency is synthetic: `measure_candidate` is replaced by a figure proportional to the input's pixels (what
a batch-1 CNN's cost roughly does), so which candidate fits at which size is decided by the test, not by this
host's load (a real measurement on 2 shared cores would make the budget decision flaky). Everything else
(teacher, candidates, proxy training, distillation) runs for real, with tiny epochs: 1 to 2 minutes on 2 shared
cores, too long for the default run (marked `search`)."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("torch_pruning")
pytestmark = pytest.mark.search

from tests.cli.test_eval_cmd import _photos  # noqa: E402

OPTS = dict(teacher="cifar_resnet20", transfer="none", student="auto", input_size=[64, 64], teacher_epochs=1,
            finetune_epochs=1, probe_epochs=0, distill_epochs=1, search_max_family=1,
            search_prune_ratios=[0.5, 0.75], search_prune_depths=[], proxy_epochs=1, calib_size=40, threads=1)
FULL = 64 * 64


def _latency(per_pixel_ms: dict[str, float], default: float, seen: list):
    """measure_candidate's stand-in: ms = factor * (pixels of the batch it is given) / 64x64."""

    def measure(model, calib, target, work, preset="mixed"):
        h, w = calib.shape[-2:]
        seen.append((work.name, (h, w)))
        factor = next((v for k, v in per_pixel_ms.items() if work.name.startswith(k)), default)
        return {"latency_ms": factor * h * w / FULL, "judged_on": "p90", "percentile": "p90", "estimated": False,
                "precision": "int8", "runtime": "synthetic", "size_bytes": 1000}

    return measure


def _through(run_dir: Path, last: str, data: Path, **over):
    """The pipeline as edgekd.runner builds it (the teacher trained here on all classes), up to stage `last`,
    with the run's DataLoader (which decodes the data at a searched student's size)."""
    from rich.console import Console

    from edgekd.data.dataset import DataLoader
    from edgekd.pipeline import run_pipeline
    from edgekd.plan import build_specs, validate_options
    from edgekd.runner import data_config
    from edgekd.targets import load_target
    from edgekd.teacher_choice import choose_teacher

    opts = validate_options({**OPTS, "data": str(data), **over})
    target = load_target(opts.target)
    load = DataLoader(data_config(opts, target), run_dir / ".cache")
    pre = load().preprocessing
    opts = choose_teacher(opts, load().num_classes, len(load().train), pre.channels, tuple(pre.input_size)).options
    specs = build_specs(opts, target, pre.channels, pre.input_size)
    names = [s.name for s in specs]
    return run_pipeline(specs[:names.index(last) + 1], run_dir, fingerprint=lambda: load().fingerprint,
                        data_loader=load, console=Console(quiet=True), progress=None)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("res") / "data"
    _photos(data, n_train=24, n_test=4, sides=(64, 65))
    return data


@pytest.fixture(scope="module")
def shrunk_run(photos, tmp_path_factory):
    """Every candidate over the 1 ms budget at 64x64: the family member fits at 48x48 (1.5 ms per 64x64), the
    pruned teachers only at 32x32 (2 ms per 64x64: 1.125 ms at 48x48)."""
    import edgekd.search.latency as latency
    import edgekd.stages.search as search

    seen, proxied = [], []
    real_proxy = search._proxy

    def proxy(cand, rung, cfg, teacher, data, work, teacher_val, sdata=None):
        proxied.append((cand.name, cand.input_size, tuple((sdata or data).preprocessing.input_size)))
        return real_proxy(cand, rung, cfg, teacher, data, work, teacher_val, sdata)

    run_dir = tmp_path_factory.mktemp("res-run") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(latency, "measure_candidate", _latency({"cifar_resnet20": 2.0}, 1.5, seen))
        mp.setattr(search, "_proxy", proxy)
        out = _through(run_dir, "distill", photos)
    return run_dir, {o.spec.name: o.manifest for o in out}, seen, proxied


def test_candidates_over_budget_are_measured_again_at_each_smaller_size_until_they_fit(shrunk_run):
    _, manifests, seen, _ = shrunk_run
    m = manifests["search"].metrics
    rows = {c["name"]: c for c in m["candidates"]}
    full = [n for n, r in rows.items() if r["input_size"] is None]
    assert len(full) == 3  # 1 family member, the teacher pruned 50% and 75% (no depth pruning: it is slow)
    family = next(n for n in full if rows[n]["source"] == "family")
    assert not family.startswith("cifar_resnet20")
    # each measured at the size it takes: full ones on 64x64 batches, copies on their own size
    assert all(size == (64, 64) for name, size in seen if name in full)
    assert {(n, s) for n, s in seen if n not in full} == \
        {(f"{n}-48x48", (48, 48)) for n in full} | {(f"{n}-32x32", (32, 32)) for n in full if n != family}
    # the family member fits at 48x48 and is not shrunk further; the pruned teachers go on to 32x32
    assert f"{family}-32x32" not in rows
    assert rows[f"{family}-48x48"]["input_size"] == [48, 48]
    assert m["sizes_tried"] == [[48, 48], [32, 32]]
    assert "3 candidate(s) over the latency budget at 64x64 tried at smaller inputs (48x48, 32x32): 3 of 5 fit" \
        in manifests["search"].notes, manifests["search"].notes


def test_shrunk_candidates_train_and_are_scored_at_their_size(shrunk_run):
    _, manifests, _, proxied = shrunk_run
    assert proxied and all(size is not None for _, size, _ in proxied)  # only the fitting (shrunk) ones
    assert all(tuple(size) == val for _, size, val in proxied)  # val decoded at the candidate's size
    assert {name for name, _, _ in proxied} <= {c["name"] for c in manifests["search"].metrics["candidates"]}


def test_a_shrunk_winner_sets_the_searchs_preprocessing_and_distill_trains_it_there(shrunk_run):
    from edgekd.search.report import summary_line

    run_dir, manifests, _, _ = shrunk_run
    search = manifests["search"]
    m = search.metrics
    h, w = m["chosen_input_size"]
    assert (h, w) in {(48, 48), (32, 32)} and m["chosen"].endswith(f"-{h}x{w}")
    assert tuple(search.preprocessing.input_size) == (h, w)
    assert search.preprocessing.resize_shorter is None or search.preprocessing.resize_shorter >= h
    assert search.preprocessing.size_source.startswith("the student search: ")
    assert f"the chosen student takes {h}x{w}" in summary_line(m)
    teacher = manifests["teacher"].preprocessing
    assert tuple(teacher.input_size) == (64, 64)  # the teacher stays at the data's size
    distill = manifests["distill"]
    assert tuple(distill.preprocessing.input_size) == (h, w)
    assert distill.metrics["student_input_size"] == [h, w]
    assert any(n.startswith(f"The student takes {h}x{w} inputs, the teacher 64x64") for n in distill.notes)
    (folder,) = run_dir.glob("distill-*")
    on_disk = json.loads((folder / "manifest.json").read_text())
    assert on_disk["preprocessing"]["input_size"] == [h, w]


def test_no_candidate_at_any_size_fails_naming_the_smallest_size_and_the_fastest(shrunk_run, photos, tmp_path):
    import edgekd.search.latency as latency
    from edgekd.errors import StageFailed

    src, _, _, _ = shrunk_run
    run_dir = tmp_path / "run"
    shutil.copytree(src, run_dir)  # teacher and finetune reused
    for d in [*run_dir.glob("search-*"), *run_dir.glob(".work-search-*"), *run_dir.glob("distill-*")]:
        shutil.rmtree(d)
    seen: list = []
    with pytest.MonkeyPatch.context() as mp:
        # at 32x32 the family member takes 100/4 = 25 ms, every pruned teacher 50 ms: none fits 1 ms (the
        # search options differ from the fixture's but the teacher is reused: it does not depend on them)
        mp.setattr(latency, "measure_candidate", _latency({"cifar_resnet20": 200.0}, 100.0, seen))
        with pytest.raises(StageFailed) as err:
            _through(run_dir, "search", photos, search_prune_ratios=[0.5])
    assert len(list(run_dir.glob("teacher-*"))) == 1
    msg = str(err.value)
    assert err.value.exit_code == 1
    assert "at any input size down to 32x32" in msg, msg
    fastest = next(n for n, size in seen if size == (32, 32) and not n.startswith("cifar_resnet20"))
    assert f"the fastest, {fastest}, takes 25.000 ms" in msg, msg
    assert "no student was trained" in msg
    assert not list(run_dir.glob("distill-*"))

