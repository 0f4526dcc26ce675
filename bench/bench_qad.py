"""Bench (issue 4): INT8 quantization-aware distillation of the ResNet-20 student, and batch-1 latency of the
INT8 student against the FP32 teacher (OpenVINO and PyTorch eager), plus ResNet-56 INT8 vs FP32 on OpenVINO.

    python bench/bench_qad.py --data-tar ../shared/data/cifar10-jpeg \
        --models ../shared/models/cifar10-resnet --work /tmp/edgekd-bench \
        [--train-per-class 200] [--test-per-class 200] [--qad-epochs 1] [--qad-student pretrained:kd] \
        [--results-md bench/RESULTS.md]

Takes the same data/subset/epoch options as bench_transfer_distill.py and the same run folder, so the
fine-tuned teacher and the distilled student are reused (same options -> same stage ids), then runs edgekd's
qad stage on top. The qad stage reports FP32 / PTQ / QAD top-1 with the PyTorch fake-quant models on the test
subset; this script also exports every model to OpenVINO (INT8 through edgekd.quant.nncf_quant
.export_openvino_ir, FP32 through ONNX + edgekd's OpenVINO runtime) and measures top-1 of the artifacts on the
full 10,000-image test split and on the 8,000 test images never used for model selection, and latency at
batch 1 with edgekd.runtimes.timing.measure_latency, the same function around PyTorch eager.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_transfer_distill as btd  # noqa: E402

SECTION = "bench_qad"


def parse_args(argv=None):
    p = btd.build_parser(__doc__)
    p.add_argument("--qad-epochs", type=int, default=1)
    p.add_argument("--qad-student", default="pretrained:kd", help="INIT:VARIANT of the distilled student to quantize")
    p.add_argument("--latency-threads", default="2,1", help="thread counts for the latency table (first = main)")
    p.add_argument("--latency-rounds", type=int, default=3)
    p.add_argument("--eval-threads", type=int, default=1, help="OpenVINO threads for the accuracy passes")
    p.add_argument("--teacher-calib", type=int, default=128, help="calibration images for ResNet-56 PTQ (NNCF "
                   "statistics are collected one image at a time: ~0.7 s/image here under load)")
    p.add_argument("--no-replay-qad", dest="replay_qad", action="store_false",
                   help="when the qad stage kept PTQ, do not re-run its QAD recipe here to measure the QAD model")
    p.add_argument("--eval-max", type=int, default=None, help="smoke tests: evaluate only the first N test images")
    p.set_defaults(parts="qad,report")
    return p.parse_args(argv)


def ov_top1(path: Path, precision: str, x, labels, threads: int, batch: int = 250) -> float:
    import numpy as np

    from edgekd.runtimes import RuntimeSettings, get_runtime

    sess = get_runtime("openvino").load(path, RuntimeSettings(device="CPU", precision=precision, threads=threads,
                                                              batch=batch, performance_hint="THROUGHPUT"))
    pred = np.concatenate([sess.infer(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])
    return float((pred == labels).mean())


def replay_qad(b: btd.Bench, q, ptq_model, teacher, example) -> dict:
    """The qad stage's QAD step again (same config, seed, data and PTQ start), keeping the QAD model, which
    the stage discards when PTQ scored higher on its validation split."""
    import copy
    import tempfile

    from edgekd.quant.nncf_quant import prepare_for_qat
    from edgekd.losses.training import build_distill_loss, make_step
    from edgekd.stages.qad import Config
    from edgekd.train.evaluate import accuracy
    from edgekd.train.loop import Phase, Trainer

    cfg = Config.model_validate(q.manifest.config)
    pre = b.data.preprocessing
    t0 = time.perf_counter()
    qmodel = prepare_for_qat(copy.deepcopy(ptq_model))
    loss, s_taps, t_taps = build_distill_loss(cfg.loss, qmodel, teacher, pre, example.device)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(qmodel, make_step(loss, s_taps, t_taps, teacher, None),
                          lambda: accuracy(qmodel, b.data.val, pre), b.data.train, pre, Path(tmp) / "state", extra=loss)
        result = trainer.fit([Phase("qad", cfg.train)])
    for taps in (s_taps, t_taps):
        if taps:
            taps.close()
    return {"model": qmodel.eval(), "qad_top1_subset": accuracy(qmodel, b.data.val, pre),
            "stage_qad_top1": q.manifest.metrics["qad_top1"], "history": result.history,
            "wall_s": time.perf_counter() - t0}


def part_qad(b: btd.Bench) -> None:
    import numpy as np
    import torch

    from edgekd.data.batches import eval_batches
    from edgekd.data.calibration import read_calibration
    from edgekd.data.dataset import DataConfig, load_data
    from edgekd.export.onnx_export import export_onnx
    from edgekd.preprocess import normalize_np
    from edgekd.quant.nncf_quant import QuantSpec, export_openvino_ir, load_quantized, quantize
    from edgekd.runtimes import RuntimeSettings, get_runtime
    from edgekd.runtimes.timing import measure_latency
    from edgekd.stages.common import example_input, load_model

    a = b.args
    init, variant = a.qad_student.split(":")
    t_all = time.perf_counter()
    opts = btd.distill_options(b, init, variant, qad_epochs=a.qad_epochs, max_fallback_layers=0)
    specs = b.teacher_specs(a.distill_teacher) + b.specs(opts, "qad")[2:]
    btd.log(f"qad stage ({a.qad_epochs} epoch(s)) for student {a.qad_student} ...")
    out = b.run(specs)
    q = out["qad"]
    qm = q.manifest.metrics
    btd.log(f"qad: fp32 {qm['fp32_top1']:.4f} ptq {qm['ptq_top1']:.4f} qad {qm['qad_top1']:.4f} kept {qm['kept']} "
            f"({q.manifest.wall_s:.0f}s{' reused' if q.skipped else ''})")
    stage = {k: qm.get(k) for k in ("teacher_top1", "fp32_top1", "ptq_top1", "qad_top1", "int8_top1", "kept",
                                    "calibration_images", "required_top1")}
    stage.update(stage_wall_s=q.manifest.wall_s, reused=q.skipped, notes=q.manifest.notes,
                 history=[{k: h.get(k) for k in ("epoch", "loss", "val_top1", "epoch_s")} for h in qm["history"]],
                 distill_stage=out["distill"].manifest.id, distill_student_top1=out["distill"].manifest.metrics["student_top1"])

    # ------------------------------------------------------------------ models and OpenVINO artifacts
    pre = b.data.preprocessing
    example = example_input(pre)
    teacher, _ = load_model(out["finetune"].dir, out["finetune"].manifest)
    student, _ = load_model(out["distill"].dir, out["distill"].manifest)
    teacher.eval(), student.eval()
    calib = read_calibration(q.dir / q.manifest.artifact("calibration").path, pre)
    calib_x = [x for x, _ in eval_batches(calib, pre, 64)]
    preset = q.manifest.config.get("preset", "trt")  # the qad stage's own preset (edgekd.plan.quant_preset)
    spec = QuantSpec(preset=preset, subset_size=len(calib))
    art_dir = b.args.work / "qad-artifacts" / q.manifest.id
    art_dir.mkdir(parents=True, exist_ok=True)
    ov = get_runtime("openvino")
    paths, build_s = {}, {}

    def fp32_ir(name, model):
        t = time.perf_counter()
        onnx = art_dir / f"{name}.onnx"
        if (art_dir / "ov" / f"{name}.xml").is_file():  # artifacts of this qad stage id from an earlier call
            paths[name] = art_dir / "ov" / f"{name}.xml"
            return
        export_onnx(model, onnx, example)
        paths[name] = ov.compile(onnx, art_dir / "ov", RuntimeSettings(precision="fp32")).path
        build_s[name] = time.perf_counter() - t

    def int8_ir(name, qmodel, t0):
        if (art_dir / f"{name}.xml").is_file() and name in ("teacher_int8_ptq",):
            paths[name] = art_dir / f"{name}.xml"
            return
        export_openvino_ir(qmodel, art_dir / f"{name}.xml", example)
        paths[name] = art_dir / f"{name}.xml"
        build_s[name] = time.perf_counter() - t0

    btd.log("exporting OpenVINO artifacts (and PTQ of the student and of ResNet-56) ...")
    fp32_ir("teacher_fp32", teacher)
    fp32_ir("student_fp32", student)
    t = time.perf_counter()
    qad_model = load_quantized(student, q.dir / q.manifest.artifact("quantized").path, example)
    int8_ir("student_int8_kept", qad_model, t)
    t = time.perf_counter()
    ptq_model = quantize(student, calib_x, spec, example)
    int8_ir("student_int8_ptq", ptq_model, t)
    t = time.perf_counter()
    if (art_dir / "teacher_int8_ptq.xml").is_file():
        int8_ir("teacher_int8_ptq", None, t)
    else:
        teacher_int8 = quantize(teacher, calib_x, spec.model_copy(
            update={"subset_size": min(a.teacher_calib, len(calib))}), example)
        int8_ir("teacher_int8_ptq", teacher_int8, t)
    replay = None
    if stage["kept"] == "ptq" and a.replay_qad:
        replay = replay_qad(b, q, ptq_model, teacher, example)
        t = time.perf_counter()
        int8_ir("student_int8_qad_replay", replay.pop("model"), t)
        btd.log(f"QAD replay: {replay}")
    precision = {k: ("int8" if "int8" in k else "fp32") for k in paths}

    # ------------------------------------------------------------------ accuracy of the artifacts
    full = load_data(DataConfig(source=str(b.root), input_size=b.target.input_size), b.args.work / ".cache").test
    in_subset = np.zeros(len(full), bool)
    for c in np.unique(full.labels):
        in_subset[np.flatnonzero(full.labels == c)[:a.test_per_class]] = True
    if a.eval_max:
        full = full.subset(np.arange(min(a.eval_max, len(full))))
        in_subset = in_subset[:len(full)]
    x_full = normalize_np(full.images, pre)
    acc = {}
    t = time.perf_counter()
    for name, path in paths.items():
        acc[name] = {"full_10k": ov_top1(path, precision[name], x_full, full.labels, a.eval_threads),
                     "subset": ov_top1(path, precision[name], x_full[in_subset], full.labels[in_subset], a.eval_threads),
                     "held_out": ov_top1(path, precision[name], x_full[~in_subset], full.labels[~in_subset], a.eval_threads)}
        btd.log(f"top-1 {name}: {acc[name]}")
    eval_s = time.perf_counter() - t

    # ------------------------------------------------------------------ latency at batch 1
    x1 = np.ascontiguousarray(x_full[:1])
    xt = torch.from_numpy(x1)
    lat: dict[str, dict[str, list]] = {}
    describe = {}
    t = time.perf_counter()
    threads_list = [int(v) for v in a.latency_threads.split(",") if v]
    for rnd in range(a.latency_rounds):
        for threads in threads_list:
            key = f"threads={threads}"
            lat.setdefault(key, {})
            for name, path in paths.items():
                sess = ov.load(path, RuntimeSettings(device="CPU", precision=precision[name], threads=threads,
                                                     streams=1, batch=1, performance_hint="LATENCY"))
                stats = measure_latency(lambda: sess.infer(x1))
                lat[key].setdefault(f"openvino {name}", []).append(stats.to_dict(include_samples=False))
                if rnd == 0 and threads == threads_list[0]:
                    d = sess.describe()
                    describe[name] = {k: d.get(k) for k in ("version", "device_name", "precision", "properties",
                                                            "heavy_layer_precisions", "layers_not_in_requested_precision")}
                del sess
            prev = torch.get_num_threads()
            torch.set_num_threads(threads)
            for name, model in (("teacher_fp32", teacher), ("student_fp32", student)):
                with torch.inference_mode():
                    stats = measure_latency(lambda: model(xt))
                lat[key].setdefault(f"pytorch-eager {name}", []).append(stats.to_dict(include_samples=False))
            torch.set_num_threads(prev)
            btd.log(f"latency round {rnd + 1} {key}: " + ", ".join(
                f"{k} {v[-1]['median_ms']:.3f}ms" for k, v in lat[key].items()))
    latency_s = time.perf_counter() - t
    p50 = {key: {name: float(np.median([r["median_ms"] for r in rows])) for name, rows in d.items()}
           for key, d in lat.items()}
    ratios = {key: {
        "teacher_ov_fp32_over_student_ov_int8": m["openvino teacher_fp32"] / m["openvino student_int8_kept"],
        "teacher_eager_over_student_ov_int8": m["pytorch-eager teacher_fp32"] / m["openvino student_int8_kept"],
        "teacher_ov_fp32_over_teacher_ov_int8": m["openvino teacher_fp32"] / m["openvino teacher_int8_ptq"],
        "student_ov_fp32_over_student_ov_int8": m["openvino student_fp32"] / m["openvino student_int8_kept"],
    } for key, m in p50.items()}
    b.save("qad", {"stage": stage, "accuracy_openvino": acc, "latency_rounds": lat, "latency_p50_ms": p50,
                   "ratios": ratios, "describe": describe, "qad_replay": replay, "build_s": build_s, "eval_s": eval_s,
                   "latency_s": latency_s, "total_s": time.perf_counter() - t_all, "qad_student": a.qad_student,
                   "qad_epochs": a.qad_epochs, "preset": preset,
                   "teacher_calib": min(a.teacher_calib, len(calib)), "latency_threads": threads_list, "rounds": a.latency_rounds,
                   "held_out_images": int((~in_subset).sum()), "artifacts": {k: str(v) for k, v in paths.items()}})


def render(parts: dict) -> str:
    r = parts["qad"]
    mach, a, st = r["machine"], r["args"], r["stage"]
    pct = btd.pct
    lines = [f"<!-- {SECTION}:start -->", "## bench_qad.py (issue 4): INT8 QAD and batch-1 latency", "",
             f"Machine: {mach['cpu']}, {mach['cores']} cores shared with other engineers' jobs (load average "
             f"{mach['load_avg_at_start']:.1f} at start), OpenVINO CPU plugin, precision pinned (f32 hint; INT8 from "
             f"the FakeQuantize graph). Data: {r['data']}.", "",
             "Command:", "```",
             "python bench/bench_qad.py --data-tar ../shared/data/cifar10-jpeg --models ../shared/models/cifar10-resnet \\",
             f"    --work /tmp/edgekd-bench --train-per-class {a['train_per_class']} --test-per-class {a['test_per_class']} "
             f"--finetune-epochs {a['finetune_epochs']} --pretrained-epochs {a['pretrained_epochs']} "
             f"--qad-epochs {r['qad_epochs']} --qad-student {r['qad_student']} --latency-rounds {r['rounds']} "
             "--results-md bench/RESULTS.md", "```", "",
             f"Student: ResNet-20 `{r['qad_student']}` from bench_transfer_distill.py (stage {st['distill_stage']}), "
             f"teacher: fine-tuned ResNet-56 (`{a['distill_teacher']}`). QAD: edgekd's qad stage, {r['qad_epochs']} "
             f"epoch(s) on the SUBSET of {10 * int(a['train_per_class'])} training images, lr 0.002 cosine, BN frozen, "
             f"KD loss as in distillation, NNCF preset `{r['preset']}` (the stage's; the same for the PTQ baselines), "
             f"{st['calibration_images']} calibration images ({r['teacher_calib']} of them for ResNet-56 PTQ), "
             f"fallback disabled; stage wall {st['stage_wall_s']:.0f} s. Kept: {st['kept']}.", "",
             "### Accuracy (top-1)", "",
             "| model | PyTorch, qad stage (test subset, " + f"{10 * int(a['test_per_class'])} imgs) | OpenVINO artifact, "
             f"held-out {r['held_out_images']} test imgs | OpenVINO artifact, full 10,000 test |", "|---|---|---|---|"]
    acc = r["accuracy_openvino"]
    rp = r.get("qad_replay")
    stage_col = {"student_fp32": st["fp32_top1"], "student_int8_ptq": st["ptq_top1"],
                 "student_int8_kept": st["int8_top1"], "student_int8_qad_replay": rp and rp["qad_top1_subset"],
                 "teacher_fp32": st["teacher_top1"], "teacher_int8_ptq": None}
    labels = {"student_fp32": "ResNet-20 FP32", "student_int8_ptq": "ResNet-20 INT8 PTQ",
              "student_int8_kept": f"ResNet-20 INT8, the qad stage's artifact (kept: {st['kept']})",
              "student_int8_qad_replay": "ResNet-20 INT8 QAD (the stage's QAD step replayed here; stage measured "
                                         f"{pct(st['qad_top1'])})",
              "teacher_fp32": "ResNet-56 FP32 (teacher)", "teacher_int8_ptq": "ResNet-56 INT8 PTQ"}
    for k, label in labels.items():
        if k not in acc:
            continue
        lines.append(f"| {label} | {pct(stage_col[k])} | {pct(acc[k]['held_out'])} | {pct(acc[k]['full_10k'])} |")
    qad_key = "student_int8_qad_replay" if "student_int8_qad_replay" in acc else "student_int8_kept"
    f32, ptq, qad = (acc[k]["held_out"] for k in ("student_fp32", "student_int8_ptq", qad_key))
    kept = acc["student_int8_kept"]["held_out"]
    sf, sp, sq = st["fp32_top1"], st["ptq_top1"], st["qad_top1"]
    lines += ["", f"- QAD - PTQ: {100 * (qad - ptq):+.2f} points on the held-out OpenVINO set, {100 * (sq - sp):+.2f} in "
                  f"the stage (target >= 0: {'reached' if qad >= ptq and sq >= sp else 'NOT reached on both'}).",
              f"- FP32 - QAD: {100 * (f32 - qad):+.2f} points held-out, {100 * (sf - sq):+.2f} in the stage (target <= 0.3: "
              f"{'reached' if f32 - qad <= 0.003 and sf - sq <= 0.003 else 'NOT reached on both'}). One image is 0.0125 "
              f"points of 8,000; the binomial standard error at {100 * f32:.0f}% on {r['held_out_images']} images is "
              f"{100 * (f32 * (1 - f32) / r['held_out_images']) ** 0.5:.2f} points, so differences of 0.3 points are at "
              "the noise level of this split.",
              f"- The INT8 artifact edgekd ships (kept: {st['kept']}) is {100 * (f32 - kept):+.2f} points below FP32 on the "
              f"held-out set ({100 * (acc['student_fp32']['full_10k'] - acc['student_int8_kept']['full_10k']):+.2f} on the "
              "full test split).", ""]
    main = f"threads={r['latency_threads'][0]}"
    lines += ["### Latency at batch 1 (p50 ms, median over rounds)", "",
              f"edgekd.runtimes.timing.measure_latency (>= 200 runs and >= 2 s after warm-up) around `Session.infer` "
              f"(OpenVINO, one synchronous request, LATENCY hint, 1 stream) and around the PyTorch eager model "
              f"(torch.set_num_threads(N), inference_mode); {r['rounds']} interleaved rounds; cell = median over rounds of "
              "p50 (lowest p90 of the rounds in brackets). Other engineers' jobs kept 1-4 processes running on the 2 "
              "cores: absolute numbers are inflated and noisy (PyTorch with 2 threads suffers most: its OpenMP threads "
              "wait on each other when a core is taken), ratios were measured side by side in one process.", "",
              "| model | " + " | ".join(r["latency_p50_ms"]) + " |", "|---|" + "---|" * len(r["latency_p50_ms"])]
    for name in r["latency_p50_ms"][main]:
        cells = " | ".join(f"{r['latency_p50_ms'][k][name]:.3f} (p90 "
                           f"{sorted(x['p90_ms'] for x in r['latency_rounds'][k][name])[0]:.3f})" for k in r["latency_p50_ms"])
        lines.append(f"| {name} | {cells} |")
    lines.append("")
    for key, ratio in r["ratios"].items():
        lines.append(f"- {key}: OV FP32 teacher / OV INT8 student = {ratio['teacher_ov_fp32_over_student_ov_int8']:.1f}x "
                     f"(target >= 5: {'reached' if ratio['teacher_ov_fp32_over_student_ov_int8'] >= 5 else 'NOT reached'}); "
                     f"eager teacher / OV INT8 student = {ratio['teacher_eager_over_student_ov_int8']:.1f}x (target >= 20: "
                     f"{'reached' if ratio['teacher_eager_over_student_ov_int8'] >= 20 else 'NOT reached'}); "
                     f"ResNet-56 OV FP32 / INT8 = {ratio['teacher_ov_fp32_over_teacher_ov_int8']:.2f}x (target >= 1.8: "
                     f"{'reached' if ratio['teacher_ov_fp32_over_teacher_ov_int8'] >= 1.8 else 'NOT reached'}); "
                     f"ResNet-20 OV FP32 / INT8 = {ratio['student_ov_fp32_over_student_ov_int8']:.2f}x.")
    heavy = {k: v.get("heavy_layer_precisions") for k, v in r["describe"].items()}
    lines += ["", f"Heavy-layer runtime precisions (OpenVINO runtime model): {json.dumps(heavy)}.", "",
              f"Wall: qad stage {st['stage_wall_s']:.0f} s, exports/PTQ {sum(r['build_s'].values()):.0f} s, OpenVINO "
              f"accuracy passes {r['eval_s']:.0f} s, latency {r['latency_s']:.0f} s, script total {r['total_s']:.0f} s "
              f"(finished {r['finished']}).", "", f"<!-- {SECTION}:end -->"]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    t0 = time.perf_counter()
    if "qad" in parts:
        b = btd.Bench(args)
        part_qad(b)
    if "report" in parts:
        results = btd.load_parts(args.work / "results")
        text = render(results)
        if args.results_md:
            btd.write_section(args.results_md, SECTION, text)
            btd.log(f"wrote section {SECTION} into {args.results_md}")
        else:
            print(text)
    btd.log(f"total {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
