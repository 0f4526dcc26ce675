"""Bench (issue 15): mobile INT8 artifacts of the CIFAR-10 ResNet-20 student, side by side with OpenVINO INT8.

    flock /work/wt/notes/heavy.lock python bench/bench_mobile.py /tmp/cifar-full-run --config /tmp/cifar-full.yaml \
        --out /tmp/h1-mobile [--train-per-class 1500] [--qad-epochs 1] [--rounds 7] [--seconds 2]

Needs the `mobile` extra. On a COPY of a finished CIFAR run (its teacher, distilled student, NNCF qad stage with
its calibration set, export, bench eval set), this script:
1. runs edgekd's qad_pt2e stage (edgekd.stages.qad_pt2e.run, the code compress runs for --target android-arm64):
   XNNPACKQuantizer PTQ on the NNCF route's calibration images, then QAD with the teacher (the qad stage's losses
   and schedule; the training split capped at --train-per-class per class: a subset, said in the output; val and
   test are the run's own splits), the better of PTQ/QAD on val kept; the stage folder is added to the copy;
2. writes the bundle (onnx, ort, openvino, executorch, tflite, coreml): every .pte and .tflite is run on the whole
   test split and compared with the PyTorch quantized reference; fully-integer checks;
3. the litert-torch quantizer route as PTQ only (its .tflite converted, checked for float ops, run on test);
4. batch-1 latency of the INT8 .pte (ExecuTorch, XNNPACK), the INT8 .tflite (LiteRT) and the QDQ ONNX (ONNX
   Runtime CPU), all pinned to 1 thread, interleaved in rounds (each round times every model --seconds in a
   rotating order); p50 = median of the per-round p50s; ratios vs ONNX Runtime.
Writes OUT/mobile_results.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_data(config: Path, train_per_class: int | None):
    from edgekd.runner import data_config
    from edgekd.data.dataset import load_data as load
    from edgekd.plan import load_pipeline_file, validate_options
    from edgekd.targets import load_target

    opts = validate_options(dict(load_pipeline_file(config), max_train_per_class=train_per_class))
    return load(data_config(opts, load_target("android-arm64")))


def add_pt2e_stage(run_dir: Path, data, epochs: int, routes: list[str]) -> dict:
    """Run the qad_pt2e stage on the run copy and register it in report.json; returns its metrics."""
    from rich.console import Console

    from edgekd.bundle.run_info import open_run
    from edgekd.manifest import finalize_stage_dir, now_iso, save_manifest, stage_id
    from edgekd.stages import qad_pt2e

    run = open_run(run_dir)
    qad = run.manifest("qad")
    train = dict(qad.config["train"], epochs=epochs)
    cfg = qad_pt2e.Config(routes=routes, loss=qad.config["loss"], train=train)
    parents = {"teacher": run.manifest("finetune"), "student": run.manifest("distill"), "qad": qad}
    parent_dirs = {"teacher": run.dirs["finetune"], "student": run.dirs["distill"], "qad": run.dirs["qad"]}
    sid = stage_id("qad_pt2e", cfg.model_dump(mode="json"), {k: m.id for k, m in parents.items()}, data.fingerprint)
    work = run_dir / f".work-qad_pt2e-{sid}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    ctx = SimpleNamespace(data=data, work_dir=work, progress=None, console=Console(stderr=True),
                          parent_dirs=parent_dirs, run_dir=run_dir)
    t0, started = time.perf_counter(), now_iso()
    m = qad_pt2e.run(cfg, parents, ctx)
    m.id, m.config, m.parents = sid, cfg.model_dump(mode="json"), {k: p.id for k, p in parents.items()}
    m.input_fingerprint, m.started_at, m.finished_at = data.fingerprint, started, now_iso()
    m.wall_s = round(time.perf_counter() - t0, 1)
    shutil.rmtree(work / "state", ignore_errors=True)
    save_manifest(m, work)
    final = run_dir / f"qad_pt2e-{sid}"
    finalize_stage_dir(work, final)
    report = json.loads((run_dir / "report.json").read_text())
    report["stages"] = [s for s in report["stages"] if s["stage"] != "qad_pt2e"]
    report["stages"].insert(4, {"stage": "qad_pt2e", "id": sid, "dir": final.name, "reused": False})
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    return {**m.metrics, "wall_s": m.wall_s, "history": m.metrics.get("history")}


def litert_ptq(run_dir: Path, out: Path, data) -> dict:
    """The litert-torch quantizer (PTQ, same calibration images): fully integer? top-1 on test through LiteRT."""
    import torch

    from edgekd.bundle.mobile import convert_tflite, tflite_integer_report
    from edgekd.bundle.run_info import open_run
    from edgekd.bundle.verify import run_batched
    from edgekd.data.batches import eval_batches
    from edgekd.data.calibration import read_calibration
    from edgekd.models.checkpoint import load_edgekd_checkpoint
    from edgekd.preprocess import NormalizedImages, read_eval_set
    from edgekd.quant import pt2e
    from edgekd.runtimes import RuntimeSettings, get_runtime
    from edgekd.train.evaluate import accuracy

    run = open_run(run_dir)
    pre = data.preprocessing
    student, _ = load_edgekd_checkpoint(run.path("distill", "model"))
    calib = read_calibration(run.path("qad", "calibration"), pre)
    calib_x = [x for x, _ in eval_batches(calib, pre, 64)]
    q = pt2e.ptq(student.eval(), torch.zeros(2, pre.channels, *pre.input_size), calib_x, "pt2e-litert")
    val = accuracy(pt2e.allow_train_eval(q), data.val, pre)
    path = out / "litert_route_int8.tflite"
    convert_tflite(q, torch.zeros(1, pre.channels, *pre.input_size), path, "pt2e-litert")
    images, labels, epre = read_eval_set(run.path("bench", "eval_set"))
    logits = run_batched(get_runtime("litert").load(path, RuntimeSettings()).infer, NormalizedImages(images, epre))
    return {"val_top1_pytorch": val, "test_top1_litert": float((logits.argmax(1) == labels).mean()),
            "integer": tflite_integer_report(path), "size_bytes": path.stat().st_size}


def latency(bundle: Path, rounds: int, seconds: float) -> dict:
    """Interleaved batch-1 p50 of the INT8 .pte, .tflite and QDQ ONNX, 1 thread each."""
    from edgekd.preprocess import NormalizedImages, read_eval_set
    from edgekd.runtimes import RuntimeSettings, get_runtime

    images, _, pre = read_eval_set(bundle / "eval_set.npz")
    x = np.ascontiguousarray(NormalizedImages(images, pre)[:1], dtype=np.float32)
    models = {"pte int8 (executorch, XNNPACK)": ("executorch", bundle / "models" / "student_int8.pte"),
              "tflite int8 (LiteRT)": ("litert", bundle / "models" / "student_int8.tflite"),
              "onnx QDQ int8 (onnxruntime CPU)": ("onnxruntime", bundle / "models" / "student_int8_qdq.onnx")}
    sessions = {k: get_runtime(rt).load(p, RuntimeSettings(device="CPU", precision="int8", threads=1))
                for k, (rt, p) in models.items()}
    per_round: dict[str, list[float]] = {k: [] for k in sessions}
    names = list(sessions)
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            s = sessions[k]
            for _ in range(20):
                s.infer(x)  # warm-up
            times, t_end = [], time.perf_counter() + seconds
            while time.perf_counter() < t_end:
                t0 = time.perf_counter()
                s.infer(x)
                times.append((time.perf_counter() - t0) * 1000)
            per_round[k].append(float(np.median(times)))
    ort = "onnx QDQ int8 (onnxruntime CPU)"
    p50 = {k: float(np.median(v)) for k, v in per_round.items()}
    return {"p50_ms": p50, "per_round_p50_ms": per_round, "ratio_vs_ort": {k: p50[k] / p50[ort] for k in p50},
            "describe": {k: s.describe() for k, s in sessions.items()}, "rounds": rounds, "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--config", type=Path, required=True, help="the compress config the run was made with")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--train-per-class", type=int, default=1500)
    ap.add_argument("--qad-epochs", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    run_dir = args.out / "run"
    if not run_dir.exists():
        shutil.copytree(args.run_dir, run_dir, symlinks=True)
    timings, results = {}, {"machine": f"{__import__('platform').processor() or 'x86_64'}, torch threads 1"}
    t0 = time.perf_counter()
    data = load_data(args.config, args.train_per_class)
    timings["load_data_s"] = time.perf_counter() - t0
    results["splits"] = {r: len(data.split(r)) for r in ("train", "val", "test")}
    t0 = time.perf_counter()
    results["qad_pt2e"] = add_pt2e_stage(run_dir, data, args.qad_epochs, ["pt2e-xnnpack"])
    timings["qad_pt2e_s"] = time.perf_counter() - t0
    from edgekd.bundle.build import write_bundle

    t0 = time.perf_counter()
    bundle = write_bundle(run_dir, args.out / "bundle", ["onnx", "ort", "openvino", "executorch", "tflite", "coreml"],
                          force=True)
    timings["bundle_s"] = time.perf_counter() - t0
    b = json.loads((bundle / "bundle.json").read_text())
    results["artifacts"] = {a["name"]: {"top1_test": a["top1"], "size_bytes": sum(f["size_bytes"] for f in a["files"]),
                                        "integer": (a["verified"].get("integer") or {}).get("ok"),
                                        "verified": a["verified"].get("passed"),
                                        "vs_reference": {k: {kk: v.get(kk) for kk in ("ok", "top1_agreement", "max_abs")}
                                                         for k, v in a["verified"].items() if k.startswith("vs_")},
                                        "coreml": a["verified"].get("coreml_spec", {}).get("status")}
                            for a in b["artifacts"]}
    results["verification"] = {k: b["verification"][k] for k in ("passed", "failed", "not_run_here", "not_built")}
    t0 = time.perf_counter()
    results["litert_quantizer_ptq"] = litert_ptq(run_dir, args.out, data)
    timings["litert_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    results["latency"] = latency(bundle, args.rounds, args.seconds)
    timings["latency_s"] = time.perf_counter() - t0
    results["timings_s"] = timings
    results["subset"] = f"QAD trained on {results['splits']['train']} images ({args.train_per_class}/class), " \
                        f"{args.qad_epochs} epoch; val/test: the run's full splits"
    (args.out / "mobile_results.json").write_text(json.dumps(results, indent=2, default=str))
    a = results["artifacts"]
    print("| artifact | top-1 test | size | fully integer | verified |")
    print("|---|---|---|---|---|")
    for name in ("student_int8_openvino", "student_int8_qdq", "student_int8_pte", "student_int8_tflite",
                 "student_int8_mlpackage", "student_fp32_pte", "student_fp32_tflite"):
        if name in a:
            r = a[name]
            top1 = f"{r['top1_test']:.2%}" if r["top1_test"] is not None else "not run"
            print(f"| {name} | {top1} | {r['size_bytes'] / 1024:.0f} KB | {r['integer']} | {r['verified']} |")
    print(json.dumps({"qad_pt2e": {k: v for k, v in results["qad_pt2e"].items() if k != "history"},
                      "litert": {k: v for k, v in results["litert_quantizer_ptq"].items() if k != "integer"},
                      "litert_float_ops": results["litert_quantizer_ptq"]["integer"]["float_ops_text"],
                      "latency_p50_ms": results["latency"]["p50_ms"], "ratios": results["latency"]["ratio_vs_ort"],
                      "timings_s": timings}, indent=2))


if __name__ == "__main__":
    main()
