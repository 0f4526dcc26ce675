"""One teacher, four ways in (issue 22): the shared pretrained ResNet-56 as
(a) a registry name + weights, (b) a torch.export archive (.pt2), (c) an ONNX file (teacher only, run by ONNX
Runtime), (d) a custom module by import path (bench/models/cifar_resnet_custom.py, written without edgekd)
loading the same weights; each distils the same ResNet-20 student on a CIFAR-10-JPEG subset through
`edgekd.compress` (the Python API) to a verified bundle.

Reported: test top-1 of teacher, FP32 and INT8 student per source; distill seconds per epoch ((c) vs (a):
the cost of a teacher that runs on ONNX Runtime); whether the teachers give bit-identical logits; and whether
the students are bit-identical. Through `compress` each run is seeded by its stage ids, which include the
teacher's identity (another source is another id), so the compress students differ by construction; the
script therefore also reruns the distill stage's own code for each source's teacher with one fixed seed and
compares those students.

    python bench/bench_model_sources.py --data-tar ../shared/data/cifar10-jpeg \
        --models ../shared/models/cifar10-resnet --work /tmp/edgekd-sources --results-md bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_transfer_distill import extract, machine  # noqa: E402


def prepare_teachers(weights: Path, work: Path) -> dict[str, dict]:
    import torch

    from edgekd.models.checkpoint import load_weights, read_state_dict
    from edgekd.models.registry import build_model

    model = build_model("cifar_resnet56", num_classes=10, in_channels=3, input_size=32)
    load_weights(model, read_state_dict(weights))
    model.eval()
    example = torch.randn(2, 3, 32, 32)
    pt2, onnx = work / "resnet56.pt2", work / "resnet56.onnx"
    if not pt2.is_file():
        ep = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
        torch.export.save(ep, str(pt2))
    if not onnx.is_file():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(onnx), dynamo=False, input_names=["image"],
                              output_names=["scores"], dynamic_axes={"image": {0: "n"}, "scores": {0: "n"}},
                              opset_version=17)
    return {
        "a_registry": {"teacher": "cifar_resnet56", "teacher_weights": str(weights)},
        "b_pt2": {"teacher": str(pt2)},
        "c_onnx": {"teacher": str(onnx)},
        "d_import": {"teacher": f"{HERE / 'models' / 'cifar_resnet_custom.py'}:resnet",
                     "teacher_kwargs": {"depth": 56}, "teacher_weights": str(weights)},
    }


def common_options(args) -> dict:
    return dict(target="intel-cpu", student="cifar_resnet20", transfer="none", distill_epochs=args.epochs,
                qad_epochs=1, max_train_per_class=args.train_per_class, max_val_per_class=args.val_per_class,
                max_test_per_class=args.test_per_class, threads=args.threads, max_fallback_layers=0, seed=0)


def fixed_seed_student(run: Path, data_cfg, seed: int = 0):
    """The distill stage's own code on this run's teacher (its finetune output) with one fixed seed."""
    import tempfile

    from rich.console import Console

    from edgekd.data.dataset import load_data
    from edgekd.manifest import load_manifest
    from edgekd.pipeline import StageContext
    from edgekd.stages import distill
    from edgekd.stages.common import load_model
    from edgekd.train.loop import seed_everything

    fin = next(run.glob("finetune-*"))
    dst = next(run.glob("distill-*"))
    cfg = distill.Config.model_validate(load_manifest(dst).config)
    dataset = load_data(data_cfg, run / ".cache")
    with tempfile.TemporaryDirectory() as tmp:
        ctx = StageContext(run_dir=Path(tmp), work_dir=Path(tmp), console=Console(stderr=True), progress=None,
                           data_loader=lambda: dataset, parent_dirs={"teacher": fin})
        seed_everything(seed)
        t0 = time.perf_counter()
        manifest = distill.run(cfg, {"teacher": load_manifest(fin)}, ctx)
        wall = time.perf_counter() - t0
        student, _ = load_model(Path(tmp), manifest)
    from edgekd.train.evaluate import accuracy

    top1 = accuracy(student.eval(), dataset.test, dataset.preprocessing)
    return {k: v.clone() for k, v in student.state_dict().items()}, wall, top1


def teacher_logits(run: Path, images):
    import torch

    from edgekd.manifest import load_manifest
    from edgekd.stages.common import load_model

    fin = next(run.glob("finetune-*"))
    teacher, _ = load_model(fin, load_manifest(fin))
    teacher.eval()
    with torch.no_grad():
        return teacher(images)


def max_diff(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-tar", type=Path, required=True)
    ap.add_argument("--models", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgekd-sources"))
    ap.add_argument("--train-per-class", type=int, default=100)
    ap.add_argument("--val-per-class", type=int, default=20)
    ap.add_argument("--test-per-class", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results-md", type=Path, default=None)
    ap.add_argument("--reuse-runs", action="store_true", help="read the compress runs already in --work (their "
                    "report.json) instead of calling compress; only the fixed-seed part runs again")
    args = ap.parse_args(argv)

    import torch

    import edgekd
    from edgekd.runner import data_config
    from edgekd.data.batches import normalize_np
    from edgekd.plan import validate_options
    from edgekd.targets import load_target

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    data = extract(args.data_tar, args.work / "cifar10-jpeg")
    teachers = prepare_teachers(args.models / "resnet56-4bfd9763.th", args.work)
    info = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "runs": {}}
    from edgekd.results import Report

    for name, teacher in teachers.items():
        t0 = time.perf_counter()
        run_dir = args.work / "runs" / name
        if args.reuse_runs and (run_dir / "report.json").is_file():  # the runs as they are (another code version)
            report = Report.model_validate_json((run_dir / "report.json").read_text())
        else:
            report = edgekd.compress(data=str(data), run_dir=run_dir, bundle=True, **common_options(args), **teacher)
        distill = report.stage("distill")
        info["runs"][name] = {
            "teacher": teacher["teacher"].replace(str(args.work), "WORK").replace(str(HERE.parent), "."),
            "teacher_top1": report.model("teacher_fp32").top1, "student_fp32_top1": report.model("student_fp32").top1,
            "student_int8_top1": report.model("student_int8").top1, "verdict": report.verdict,
            "bundle_verified": bool(json.loads((Path(report.bundle) / "bundle.json").read_text())
                                    ["verification"]["passed"]) if report.bundle else None,
            "distill_s_per_epoch": distill.metrics.get("train_wall_s", distill.wall_s) / args.epochs,
            "compress_wall_s": time.perf_counter() - t0, "load_avg": os.getloadavg()[0],
        }
        print(name, json.dumps(info["runs"][name]), flush=True)
    # the same teacher four ways: its logits on test images, and the students of one fixed seed
    opts = validate_options(dict(data=str(data), **common_options(args), **teachers["a_registry"]))
    data_cfg = data_config(opts, load_target("intel-cpu"))
    from edgekd.data.dataset import load_data

    ds = load_data(data_cfg, args.work / "runs" / "a_registry" / ".cache")
    images = torch.from_numpy(normalize_np(ds.test.images[:256], ds.preprocessing))
    logits = {n: teacher_logits(args.work / "runs" / n, images) for n in teachers}
    info["teacher_logits_max_abs_diff_vs_a"] = {n: float((logits[n] - logits["a_registry"]).abs().max())
                                               for n in teachers}
    students, walls, top1 = {}, {}, {}
    for n in ("a_registry", "b_pt2", "d_import", "c_onnx"):
        students[n], walls[n], top1[n] = fixed_seed_student(args.work / "runs" / n, data_cfg)
    info["fixed_seed_student_max_abs_diff_vs_a"] = {n: max_diff(students[n], students["a_registry"]) for n in students}
    info["fixed_seed_student_test_top1"] = top1
    info["fixed_seed_distill_s_per_epoch"] = {n: w / args.epochs for n, w in walls.items()}
    print(json.dumps(info, indent=1))
    (args.work / "summary.json").write_text(json.dumps(info, indent=1))
    if args.results_md:
        with args.results_md.open("a") as md:
            md.write(render(info, args))
    return 0


def render(info: dict, args) -> str:
    m = info["machine"]
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    rows = "\n".join(
        f"| {n} | `{r['teacher']}` | {pct(r['teacher_top1'])} | {pct(r['student_fp32_top1'])} | "
        f"{pct(r['student_int8_top1'])} | {r['distill_s_per_epoch']:.1f} | {r['verdict']} | {r['bundle_verified']} |"
        for n, r in info["runs"].items())
    diffs = ", ".join(f"{n} {d:.2g}" for n, d in info["teacher_logits_max_abs_diff_vs_a"].items())
    sdiffs = ", ".join(f"{n} {d:.2g} (test top-1 {pct(info['fixed_seed_student_test_top1'][n])}, "
                       f"{info['fixed_seed_distill_s_per_epoch'][n]:.1f} s/epoch)"
                       for n, d in info["fixed_seed_student_max_abs_diff_vs_a"].items())
    return f"""
## Model sources: one teacher four ways (issue 22)

`{' '.join(['python bench/bench_model_sources.py', *sys.argv[1:]])}`; CPU: {m['cpu']}, {m['cores']} cores, torch
threads {args.threads}, load average {m['load_avg_at_start']:.2f} at the start (other jobs ran beside it). CIFAR-10-JPEG
subset: {args.train_per_class} train / {args.val_per_class} val / {args.test_per_class} test images per class;
`--transfer none`, ResNet-20 student from scratch, {args.epochs} distill epochs, 1 QAD epoch: short schedules, so
the student figures are far below a full run's; they compare the sources, nothing else.

| source | teacher | teacher test | student FP32 test | student INT8 test | distill s/epoch | verdict | bundle verified |
|---|---|---|---|---|---|---|---|
{rows}

- Teacher logits on 256 test images, max |difference| against (a): {diffs}.
- Students distilled by the distill stage's own code with one fixed seed (seed 0) from each source's teacher,
  max |weight difference| against (a): {sdiffs}. Through `compress` the students differ, by design: each run
  is seeded by its stage ids, and another teacher source is another id.
"""


if __name__ == "__main__":
    raise SystemExit(main())
