"""The search stage's decisions on the embedded digits with timing and proxy training replaced by synthetic
numbers (seconds, not minutes): too few candidates within the budget makes it generate more, and proxy
scores all at chance train the best two one rung further, then KD loss decides and the manifest says so."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from edgekd.search.confidence import ProxyScore  # noqa: E402
from tests.search.test_search_e2e import _search_only  # noqa: E402

FITS = ("depth12",)  # only the generated, deeper depth-pruned teachers fit the 1 ms budget


@pytest.fixture
def synthetic(monkeypatch):
    import edgekd.search.latency as latency
    import edgekd.stages.search as search

    calls: list[tuple[str, int]] = []

    def measure(model, calib, target, work, preset="mixed"):
        name = work.name
        ms = 0.5 if any(f in name for f in FITS) else 5.0
        return {"latency_ms": ms, "judged_on": "p90", "percentile": "p90", "estimated": False,
                "precision": "int8", "runtime": "synthetic", "size_bytes": 1000}

    def proxy(cand, rung, cfg, teacher, data, work, teacher_val, sdata=None):  # sdata: val at a smaller size
        calls.append((cand.name, rung))
        kd = 1.0 + len(cand.name) / 100 - 0.2 * rung  # the shortest name has the lowest KD loss
        return ProxyScore(top1=0.1, agree=0.2, kd=kd, rung=rung)  # 10 classes: at chance

    monkeypatch.setattr(latency, "measure_candidate", measure)
    monkeypatch.setattr(search, "_proxy", proxy)
    return calls


def test_too_few_fitting_candidates_are_supplemented_and_chance_scores_train_further(synthetic, tmp_path):
    out = _search_only(tmp_path / "run", teacher_epochs=1, finetune_epochs=1)
    m, notes = out[-1].manifest.metrics, out[-1].manifest.notes
    names = [c["name"] for c in m["candidates"]]
    # the first candidates (2 family members, the teacher pruned 50%, depth 25%, both) are all over budget
    assert not any(f in n for n in names[:5] for f in FITS)
    # search_prune_ratios [0.5] and depths [0.25]: one step deeper each, and the shallowest channel-pruned
    assert names[5:] == ["cifar_resnet20-pruned75", "cifar_resnet20-depth12", "cifar_resnet20-depth12-pruned75"]
    assert "only 0 of the first candidates fit the budgets: 3 more were generated (channel ratios 0.75; depth " \
           "shares 0.125), 2 of them fit" in notes, notes
    # both fitting candidates at chance after rung 0 (halving would stop at one): both train one more rung
    assert synthetic == [("cifar_resnet20-depth12", 0), ("cifar_resnet20-depth12-pruned75", 0),
                         ("cifar_resnet20-depth12", 1), ("cifar_resnet20-depth12-pruned75", 1)]
    rung1 = [name for name, rung in synthetic if rung == 1]
    assert any("all proxies at chance" in n and "trained further" in n for n in notes), notes
    assert m["confidence"]["level"] == "chance"
    line = m["confidence"]["line"]
    assert line.startswith("all proxies at chance") and "chosen by KD loss" in line
    assert m["chosen"] == min(rung1, key=len)  # lowest KD loss
    assert any(n.startswith(f"search choice {m['chosen']}: all proxies at chance") for n in notes)
