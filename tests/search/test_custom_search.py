"""A custom architecture that no registry knows (tests/fixtures/custom_models.py: squeeze-and-excitation
blocks, a two-layer head under `decoder`) as the teacher of `compress --student auto`, by import path, to a
verified INT8 bundle: the search prunes the user's model with Torch-Pruning and rebuilds it from its source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("openvino")
pytest.importorskip("torch_pruning")

from tests.conftest import TINY  # noqa: E402

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "custom_models.py"


@pytest.mark.search
def test_custom_teacher_through_the_search_to_a_verified_bundle(tmp_path: Path) -> None:
    import edgekd

    opts = dict(TINY, student="auto", teacher=f"{MODELS}:senet", teacher_kwargs={"width": 16, "blocks": 3},
                transfer="full", mean=[0.5], std=[0.5], search_max_family=1, search_prune_ratios=[0.5],
                search_prune_depths=[0.5], proxy_epochs=1, threads=1)
    report = edgekd.compress(**opts, run_dir=tmp_path / "run", bundle=True)
    search = report.stage("search")
    (folder,) = (tmp_path / "run").glob("search-*")
    metrics = json.loads((folder / "manifest.json").read_text())["metrics"]
    pruned = [c for c in metrics["candidates"] if c["source"] == "pruned teacher"]
    assert pruned, metrics["candidates"]  # Torch-Pruning cut the user's SE network
    assert any(c["name"].endswith("-pruned50") for c in pruned)
    assert search.metrics["chosen"]
    bundle = json.loads((Path(report.bundle) / "bundle.json").read_text())
    assert bundle["verification"]["passed"], bundle["verification"]
    int8 = [a for a in bundle["artifacts"] if a["precision"] == "int8"]
    assert int8 and all(a["verified"].get("passed") for a in int8 if a["verified"].get("loaded_and_run"))
    assert "Python factory (user code)" in report.stage("teacher").metrics["origin"]
    # the factory's arguments (not its defaults) rebuilt every later model: 3 blocks, not 2
    assert "'blocks': 3" in report.stage("teacher").metrics["origin"]
