"""A stage's id knows its code: editing a module a stage reaches reruns that stage and the ones after it, and
reuses the ones before (edgekd.codehash, edgekd.pipeline)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from rich.console import Console

from edgekd import codehash, pipeline

STAGE = '''
from pydantic import BaseModel, ConfigDict
from edgekd.manifest import Manifest
{extra}

NAME = "{name}"
READS_DATA = False


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    knob: int = 1


def run(config, parents, ctx):
    {body}
    return Manifest(stage=NAME, id="", config={{}})
'''


@pytest.fixture
def fake_stages(tmp_path, monkeypatch):
    """A package of three stages a -> b -> c in tmp_path; b imports helper. The pipeline finds them by name."""
    pkg = f"fakestages_{tmp_path.name.replace('-', '_')}"
    root = tmp_path / "src" / pkg
    root.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "helper.py").write_text("FACTOR = 1\n")
    for name, extra, body in (("a", "", "pass"), ("b", "from . import helper", "assert helper.FACTOR"),
                              ("c", "", "pass")):
        (root / f"{name}.py").write_text(STAGE.format(name=name, extra=extra, body=body))
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    import importlib

    monkeypatch.setattr(pipeline, "stage_module", lambda name: importlib.import_module(f"{pkg}.{name}"))
    codehash.clear_caches()
    yield root
    codehash.clear_caches()
    for mod in [m for m in sys.modules if m.startswith(pkg)]:
        del sys.modules[mod]


def _run(run_dir: Path) -> dict[str, tuple[str, bool]]:
    specs = [pipeline.StageSpec("a", pipeline.config_of("a")),
             pipeline.StageSpec("b", pipeline.config_of("b"), {"up": "a"}),
             pipeline.StageSpec("c", pipeline.config_of("c"), {"up": "b"})]
    outcomes = pipeline.run_pipeline(specs, run_dir, fingerprint=lambda: "fp", data_loader=lambda: None,
                                     console=Console(quiet=True), progress=None)
    return {o.spec.name: (o.manifest.id, o.skipped) for o in outcomes}


def test_a_code_change_reruns_that_stage_and_the_later_ones(fake_stages, tmp_path, capfd):
    run_dir = tmp_path / "run"
    first = _run(run_dir)
    assert not any(skipped for _, skipped in first.values())
    again = _run(run_dir)
    assert again == {name: (sid, True) for name, (sid, _) in first.items()}  # same code: all reused
    capfd.readouterr()

    (fake_stages / "helper.py").write_text("FACTOR = 2  # a fix\n")  # code that b imports, not a
    codehash.clear_caches()  # a new process would read the files afresh
    after = _run(run_dir)
    assert after["a"] == (first["a"][0], True)
    for name in ("b", "c"):
        assert after[name][0] != first[name][0] and not after[name][1]
    notes = [line for line in capfd.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == [f"note: b reruns: its code changed since b-{first['b'][0]} ({fake_stages.name}/helper.py)"]
    b_manifest = pipeline.load_manifest(run_dir / f"b-{after['b'][0]}")
    assert set(b_manifest.code) == {fake_stages.name, f"{fake_stages.name}.b", f"{fake_stages.name}.helper"}


def test_the_edgekd_stages_reach_the_code_behind_them():
    qad = codehash.reach("edgekd.stages.qad")
    assert {"edgekd.stages.qad", "edgekd.quant.kernels", "edgekd.train.loop"} <= qad
    assert "edgekd.stages.qad" not in codehash.reach("edgekd.stages.teacher")  # an earlier stage keeps its id
    # the runtime registry names its modules as strings: compile and bench reach them
    assert {"edgekd.runtimes.openvino", "edgekd.runtimes.onnxruntime"} <= codehash.reach("edgekd.stages.compile")


def test_a_module_hash_change_moves_only_the_stages_that_reach_it(monkeypatch):
    before = {s: codehash.code_id(f"edgekd.stages.{s}") for s in ("teacher", "qad", "export")}
    real = codehash.module_hash
    monkeypatch.setattr(codehash, "module_hash", lambda m: "edited" if m == "edgekd.stages.qad" else real(m))
    after = {s: codehash.code_id(f"edgekd.stages.{s}") for s in before}
    assert after["teacher"] == before["teacher"] and after["qad"] != before["qad"]


def test_ranks_running_other_code_are_refused(fake_stages, monkeypatch):
    """Under torchrun on several nodes, a node with another edgekd checkout would compute other stage ids."""
    from edgekd.errors import UsageError
    from edgekd.train import dist

    specs = [pipeline.StageSpec("a", pipeline.config_of("a"))]
    planned = pipeline._plan(specs, fake_stages.parent / "run", lambda: "fp")
    mine = [(p.spec.name, pipeline._short_hash(p.cfg_dump), p.fingerprint, pipeline._short_hash(p.code))
            for p in planned]
    other = [(n, h, fp, "0" * 12) for n, h, fp, _ in mine]
    monkeypatch.setattr(dist, "all_gather_object", lambda obj: [mine, other])
    with pytest.raises(UsageError, match="rank 1 runs other edgekd code for stage a .*same edgekd on every node"):
        pipeline._check_ranks_agree(planned, None)
    monkeypatch.setattr(dist, "all_gather_object", lambda obj: [mine, mine])
    pipeline._check_ranks_agree(planned, None)


def test_a_code_change_reruns_with_the_same_seeds(fake_stages, tmp_path):
    """The code enters the id, not the seed: an edit to edgekd reruns the stages it reaches with the random
    numbers they had (the same options train the same weights across versions, bar the edit itself)."""
    specs = [pipeline.StageSpec("a", pipeline.config_of("a")),
             pipeline.StageSpec("b", pipeline.config_of("b"), {"up": "a"}),
             pipeline.StageSpec("c", pipeline.config_of("c"), {"up": "b"})]
    before = pipeline._plan(specs, tmp_path / "run", lambda: "fp")
    (fake_stages / "helper.py").write_text("FACTOR = 3\n")
    codehash.clear_caches()
    after = pipeline._plan(specs, tmp_path / "run", lambda: "fp")
    assert [p.sid for p in after] != [p.sid for p in before]
    assert [p.seed_key for p in after] == [p.seed_key for p in before]
    assert len({p.seed_key for p in after}) == 3  # still one seed per stage
