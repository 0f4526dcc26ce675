"""One memory definition for compress (bench stage), `edgekd bench` and `edgekd gate`: the same INT8 IR
reported 11.9 MB, 75 MB and 2.0 MB through the three paths; now each measures it in a fresh child process
(edgekd.runtimes.memory.measure_memory) and the three agree within 10%."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_bench_cmd import build_run, loose_target  # noqa: E402

FAST = dict(warmup_runs=2, warmup_s=0.0, min_runs=5, min_s=0.0, max_s=5.0)


def test_compress_bench_and_gate_report_the_same_memory(tmp_path: Path) -> None:
    from edgekd.benchmark import TimingConfig, measure, settings_for
    from edgekd.benchmark import run_bench
    from edgekd.cli.gate_cmd import run_gate
    from edgekd.gate import GateConfig
    from edgekd.manifest import load_manifest
    from edgekd.preprocess import normalize_np, read_eval_set
    from edgekd.targets import load_target

    run = build_run(tmp_path / "run", width=32, depth=2)
    target_file = loose_target(tmp_path)
    target = load_target(str(target_file))
    comp_dir = next(run.glob("compile-*"))
    art = load_manifest(comp_dir).artifact("student_int8")
    images, labels, pre = read_eval_set(next(run.glob("bench-*")) / "eval_set.npz")

    # compress: the bench stage measures each compiled artifact with edgekd.benchmark.measure
    stage = measure(comp_dir / art.path, "openvino", settings_for(target, "int8"), normalize_np(images, pre), labels,
                    target.batch_size, TimingConfig(**FAST), expected_sha256=art.sha256)["memory_bytes"]
    # edgekd bench RUN --role student_int8
    bench = run_bench(run, str(target_file), "student_int8", timing=TimingConfig(**FAST))["row"]["memory_bytes"]
    # edgekd gate RUN RUN (the candidate's memory)
    _, context, _ = run_gate(run, run, str(target_file), GateConfig(rounds=12, runs_per_round=3, warmup_runs=1,
                                                                     n_boot=200, reruns_when_noisy=0))
    gate = context["candidate_memory_mb"] * 1e6
    values = [stage, bench, gate]
    print(f"memory of the INT8 IR: compress {stage / 1e6:.2f} MB, bench {bench / 1e6:.2f} MB, gate {gate / 1e6:.2f} MB")
    assert min(values) > 0, values
    assert max(values) <= 1.10 * min(values), values
    assert "fresh child process" in context["memory_method"]


def test_memory_child_failure_is_an_internal_error(tmp_path: Path) -> None:
    import numpy as np

    from edgekd.runtimes import RuntimeSettings
    from edgekd.runtimes.memory import measure_memory

    pytest.importorskip("openvino")
    bad = tmp_path / "model.xml"
    bad.write_text("not an IR")
    with pytest.raises(RuntimeError, match="memory measurement of model.xml failed in its child process"):
        measure_memory(bad, "openvino", RuntimeSettings(), np.zeros((1, 3, 8, 8), np.float32))
