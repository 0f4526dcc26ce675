"""`--student auto` end to end on the embedded digits with tiny settings: the search stage, its manifest, the
distill stage consuming its choice, the report's Pareto section; and the refusals (no candidate fits, a time
budget shorter than one proxy run, a teacher Torch-Pruning cannot prune)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("openvino")
pytest.importorskip("torch_pruning")

from typer.testing import CliRunner  # noqa: E402

from edgekd.cli.app import _register, app  # noqa: E402
from tests.conftest import HOSTS, TINY  # noqa: E402

_register()
SEARCH = dict(TINY, student="auto", search_max_family=2, search_prune_ratios=[0.5], search_prune_depths=[0.25],
              proxy_epochs=1)


@pytest.fixture(scope="module", autouse=True)
def _on_intel_cpus_device():
    """Every test here runs as intel-cpu's own device (a Xeon): the search then measures latencies instead of
    estimating them, and a budget no candidate meets is exit 1 (on an estimate it would keep the fastest)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEKD_HOST_ROOT", str(HOSTS / "intel-xeon"))
        yield


@pytest.fixture(scope="module")
def auto_run(tmp_path_factory) -> Path:
    import edgekd

    run_dir = tmp_path_factory.mktemp("auto") / "run"
    code = edgekd.compress(**SEARCH, threads=1, run_dir=run_dir, bundle=False).exit_code
    assert code in (0, 1)
    return run_dir


def _manifest(run_dir: Path, stage: str) -> dict:
    (folder,) = run_dir.glob(f"{stage}-*")
    return json.loads((folder / "manifest.json").read_text())


@pytest.mark.search
def test_search_measures_every_candidate_first_and_distill_trains_its_choice(auto_run):
    report = json.loads((auto_run / "report.json").read_text())
    assert [s["stage"] for s in report["stages"]][:4] == ["teacher", "finetune", "search", "distill"]
    m = _manifest(auto_run, "search")["metrics"]
    sources = {c["source"] for c in m["candidates"]}
    assert sources == {"family", "pruned teacher"}
    # 2 family members + the teacher channel-pruned by half, depth-pruned to a quarter of its removable blocks,
    # and both
    assert sorted(c["name"] for c in m["candidates"] if c["source"] == "pruned teacher") == [
        "cifar_resnet20-depth25", "cifar_resnet20-depth25-pruned50", "cifar_resnet20-pruned50"]
    assert len(m["candidates"]) == 5
    for c in m["candidates"]:
        assert c["latency"]["latency_ms"] > 0 and c["latency"]["estimated"] is False  # the host is set to a Xeon
        assert c["fate"]
    chosen = [c for c in m["candidates"] if c["fate"] == "chosen"]
    assert len(chosen) == 1 and chosen[0]["name"] == m["chosen"]
    assert m["chosen_latency_ms"] <= m["budget_ms"]
    assert m["decided_on"]["split"] == "val"
    # how confident the choice is: recorded, and in the report's search section
    assert m["confidence"]["level"] in ("confident", "tie", "chance", "single") and m["confidence"]["line"]
    assert all(c["proxy_agree"] and c["proxy_kd"] for c in m["candidates"] if c["proxy_top1"])
    distill = _manifest(auto_run, "distill")
    assert distill["metrics"]["searched"] == m["chosen"]
    assert distill["artifacts"][0]["facts"]["arch"] == m["chosen_arch"]
    assert "Student search" in (auto_run / "report.html").read_text()
    md = (auto_run / "report.md").read_text()
    assert "## Student search" in md
    assert f"Choice: {m['confidence']['line']}" in md
    assert "| pruned teacher: 5 blocks removed, channels |" in md  # depth25-pruned50: 5 of 7 blocks removed
    rows = {r["role"]: r for r in report["models"]}
    assert rows["student_int8"]["model"] == m["chosen"]  # named by its candidate, not its registry arch


@pytest.mark.search
def test_a_pruned_winner_round_trips_through_its_checkpoint(auto_run):
    import torch

    from edgekd.models.checkpoint import load_edgekd_checkpoint

    model, meta = load_edgekd_checkpoint(next(auto_run.glob("distill-*")) / "model.pt")
    assert model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
    m = _manifest(auto_run, "search")["metrics"]
    from edgekd.models.reshape import structure_of

    assert bool(structure_of(meta)) == (m["chosen_source"] == "pruned teacher")


@pytest.mark.search
def test_rerun_reuses_the_search(auto_run, tmp_path):
    import shutil

    import edgekd

    run_dir = tmp_path / "run"
    shutil.copytree(auto_run, run_dir)
    edgekd.compress(**SEARCH, threads=1, run_dir=run_dir, bundle=False)
    report = json.loads((run_dir / "report.json").read_text())
    assert all(s["reused"] for s in report["stages"])


@pytest.mark.search
def test_a_budget_no_candidate_meets_exits_1_naming_the_fastest_and_trains_nothing(auto_run, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(auto_run, run_dir)  # teacher and finetune reused
    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "targets" / "intel-cpu.yaml").read_text())
    raw["budgets"]["latency_ms"] = 0.0001
    target = tmp_path / "tight.yaml"
    target.write_text(yaml.safe_dump(raw))
    before = {p.name for p in run_dir.glob("distill-*")}
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump({k: v for k, v in SEARCH.items()}))
    result = CliRunner().invoke(app, ["compress", "--config", str(config), "--target", str(target), "--run-dir",
                                      str(run_dir), "-q", "--threads", "1"])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no candidate student meets" in errors[0], result.output
    assert "the fastest, " in errors[0] and " ms" in errors[0] and "no student was trained" in errors[0]
    assert {p.name for p in run_dir.glob("distill-*")} == before  # nothing new trained
    assert not list(run_dir.glob("search-*")) or len(list(run_dir.glob("search-*"))) == 1


def test_a_time_budget_shorter_than_one_proxy_run_is_refused_before_work(tmp_path):
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(app, ["compress", "--time-budget", "0.001s", "--run-dir", str(run_dir), "-q"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "shorter than one proxy run" in lines[0], result.output
    assert not list(run_dir.glob("*-*"))


@pytest.mark.parametrize("value", ["soon", "0m", "-5"])
def test_a_bad_time_budget_is_a_usage_error(tmp_path, value):
    result = CliRunner().invoke(app, ["compress", "--time-budget", value, "--run-dir", str(tmp_path / "r"), "-q"])
    assert result.exit_code == 2 and "--time-budget" in result.output


def test_student_options_need_an_explicit_student(tmp_path):
    result = CliRunner().invoke(app, ["compress", "--attention", "features.0:layer1", "--run-dir", str(tmp_path / "r"),
                                      "-q"])
    assert result.exit_code == 2 and "explicit --student" in result.output


def _search_only(run_dir: Path, **over):
    """The pipeline up to the search stage (teacher, finetune, search), as the CLI builds it."""
    import functools

    from rich.console import Console

    from edgekd.runner import data_config
    from edgekd.data.dataset import load_data
    from edgekd.pipeline import run_pipeline
    from edgekd.plan import build_specs, validate_options
    from edgekd.targets import load_target

    opts = validate_options({**SEARCH, **over})
    target = load_target(opts.target)
    load = functools.lru_cache(maxsize=1)(lambda: load_data(data_config(opts, target), run_dir / ".cache"))
    specs = build_specs(opts, target, load().preprocessing.channels, load().preprocessing.input_size)[:3]
    return run_pipeline(specs, run_dir, fingerprint=lambda: load().fingerprint, data_loader=load,
                        console=Console(quiet=True), progress=None)


@pytest.mark.search
def test_a_spent_time_budget_chooses_the_best_so_far_and_says_so(auto_run, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(auto_run, run_dir)
    out = _search_only(run_dir, time_budget="1s")  # spent by the latency phase: one proxy run, then stop
    search = out[-1].manifest
    assert search.metrics["ran_out_of_time"] is True
    trained = [c for c in search.metrics["candidates"] if c["proxy_top1"]]
    assert len(trained) == 1 and trained[0]["fate"] == "chosen"
    assert any("time budget of 1 s ran out" in n for n in search.notes)
    assert (run_dir / search.artifact("model").path).is_file() or (out[-1].stage_dir / "model.pt").is_file()


@pytest.mark.search
def test_an_interrupted_search_resumes_without_measuring_again(auto_run, tmp_path, monkeypatch):
    import shutil

    import edgekd.search.latency as latency
    import edgekd.stages.search as search

    run_dir = tmp_path / "run"
    shutil.copytree(auto_run, run_dir)
    for d in run_dir.glob("search-*"):
        shutil.rmtree(d)  # the search reruns from its work folder
    calls = []
    real = latency.measure_candidate

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(latency, "measure_candidate", counted)
    monkeypatch.setattr(search, "_proxy", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _search_only(run_dir)
    assert len(calls) == 5 and list(run_dir.glob(".work-search-*/state/state.json"))
    monkeypatch.undo()
    monkeypatch.setattr(latency, "measure_candidate", counted)
    out = _search_only(run_dir)
    assert len(calls) == 5  # every latency came from state.json
    assert out[-1].manifest.metrics["chosen"]
