"""Stage 7, bench: latency and accuracy of the *compiled* artifacts, judged against the target's budgets.

The teacher, the FP32 student and the INT8 student are measured one after another in one run, each on the
**test** split for accuracy (the only figure reported and judged; every decision before was made on val) and at
the profile's batch size for latency. The accuracy requirement is the compiled FP32 teacher's test top-1 minus
the allowed drop, so both sides of the verdict are on test; the val figures of the stages that decided (PyTorch)
are recorded beside each row as `val_top1`. The eval set written for devices (eval_set.npz: bundles, `edgekd
bench`, the gate) is a stratified sample of test, at most `eval_set_size` images (edgekd.preprocess.eval_sample);
each row's `top1_eval_set` is its top-1 on that sample, from the same predictions. "Did INT8 pay off?" is then
measured again with the two students interleaved round by round (edgekd.benchmark.paired_speedup, the
gate's sampler and statistics): measured separately, a shared machine's speed changes between the two
measurements can move the ratio by tens of percent. The method is stated in the report
(edgekd.runtimes.timing.METHODOLOGY). When the speed-up's CI is not above 1, `int8_payoff.why_not` names the
causes the artifacts and this host show (edgekd.benchmark.payoff).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from edgekd.accuracy import AccuracyRequirement
from edgekd.benchmark import (
    TimingConfig, chance_checks, estimate, judge, layers_not_in_precision, measure, paired_speedup, settings_for,
)  # fmt: skip
from edgekd.benchmark.payoff import payoff_reasons
from edgekd.manifest import ArtifactKind, Manifest, make_artifact
from edgekd.model_roles import ROLES, export_name, student_role
from edgekd.preprocess import NormalizedImages, eval_sample, sample_text, write_eval_set
from edgekd.runtimes.timing import METHODOLOGY
from edgekd.targets import TargetProfile

NAME = "bench"
READS_DATA = True
DISTRIBUTED = False


def environment(cfg: "Config") -> dict:
    """Part of the stage id: the runtime versions and this host's identity (edgekd.stage_env)."""
    from edgekd.devicebuild.environment import versions_for_stage

    return versions_for_stage(str(cfg.target["runtime"]["name"]))

LABELS = {"teacher_fp32": "teacher", "student_fp32": "student", "student_int8": "student INT8"}


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: dict
    accuracy: AccuracyRequirement = AccuracyRequirement()
    timing: TimingConfig = TimingConfig()
    eval_set_size: int = Field(2000, ge=0)  # images of test in eval_set.npz (stratified sample); 0: all of them


def final_role(target: TargetProfile) -> str:
    return student_role(target.precision)


def run(cfg: Config, parents: dict[str, Manifest], ctx) -> Manifest:
    from edgekd.stages.common import student_data  # torch: late, as the other stages' imports

    target = TargetProfile.model_validate(cfg.target)
    data = ctx.data  # the teacher's: the data's input size
    sdata = student_data(ctx, parents["distill"])  # the same test images decoded at the student's input size
    pre, tpre = sdata.preprocessing, data.preprocessing
    comp, comp_dir = parents["compile"], ctx.parent_dirs["compile"]
    export, export_dir = parents["export"], ctx.parent_dirs["export"]
    here = bool(comp.metrics["measured_on_target"])
    test = sdata.test  # reported and judged on all of it; eval_set.npz (bundles, `edgekd bench`, the gate) is a
    # stratified sample of it, at most cfg.eval_set_size images, so a bundle stays small enough for a device:
    # the student's images (the bundle's final artifact, `edgekd bench BUNDLE` and the gate run on them)
    eval_x = NormalizedImages(test.images, pre)  # normalised a batch at a time, never the whole split
    inputs = {role: eval_x for role in ROLES}  # each model on the test split at its own input size
    if sdata is not data:
        inputs["teacher_fp32"] = NormalizedImages(data.test.images, tpre)
        if data.test.labels.tolist() != test.labels.tolist():
            raise RuntimeError("the test split decoded at the student's size has other labels than at the data's")
    sample_idx, sample = eval_sample(test.labels, cfg.eval_set_size, list(pre.class_names))
    whole = sample["images"] == len(test)  # then no copy: the split may be a memory map of gigabytes
    write_eval_set(ctx.work_dir / "eval_set.npz", test.images if whole else test.images[sample_idx],
                   test.labels[sample_idx], pre, sample, sample_idx)
    def named(facts: dict) -> str | None:  # a model the user brought by its label (file name, class), not its path
        return facts.get("label") or facts.get("arch")

    archs = {"teacher_fp32": named(parents["finetune"].artifact("model").facts),
             # a searched student by its candidate name (cifar_resnet56-depth25 says more than its registry arch)
             "student_fp32": parents["distill"].metrics.get("searched")
             or named(parents["distill"].artifact("model").facts)}
    archs["student_int8"] = archs["student_fp32"]
    rows, notes, predictions = [], [], {}
    val_top1 = {"teacher_fp32": parents["finetune"].metrics.get("top1_after"),
                "student_fp32": parents["distill"].metrics.get("student_top1"),
                "student_int8": parents["qad"].metrics.get("int8_top1")}
    final = final_role(target)
    roles = ROLES
    task = ctx.progress.add_task("bench", total=len(roles)) if ctx.progress is not None else None
    for role in roles:
        if task is not None:
            ctx.progress.update(task, description=f"bench {LABELS[role]}: accuracy, then latency")
        art = comp.artifact(role)
        precision = art.facts["precision"] if role != final or target.precision == "int8" else target.precision
        settings = settings_for(target, precision, device=None if here else "CPU")
        m = measure(comp_dir / art.path, art.facts["runtime"], settings, inputs[role], test.labels,
                    target.batch_size, cfg.timing, expected_sha256=art.sha256, keep_predictions=True)
        predictions[role] = m.pop("predictions")  # the report's per-class figures come from these: no second run
        if m["cv_warning"]:
            notes.append(f"{LABELS[role]}: {m['cv_warning']}")
        onnx_art = export.artifact(export_name(role))
        device_file = bool(art.facts.get("device_artifact"))  # the .pte / .tflite the device runs (not ONNX)
        row = {"role": role, "stage": LABELS[role], "model": archs[role], "precision": precision,
               "runtime": f"{art.facts['runtime']} {settings.device}", "file": art.path,
               "measured_on": art.facts["measured_on"], **m, "top1_split": "test",
               "val_top1": art.facts.get("val_top1", val_top1[role]),
               "top1_eval_set": _top1(predictions[role][sample_idx], test.labels[sample_idx]),
               "input_size": list((tpre if role == "teacher_fp32" else pre).input_size)}
        if device_file:
            row["format"] = art.facts.get("format")
        if not here:
            row["estimate"] = estimate(export_dir / onnx_art.path, target, "int8" if role == "student_int8" else
                                       ("fp16" if target.device.peak_fp16_tflops else "fp32"), target.batch_size)
            row["estimated_latency_ms"] = row["estimate"]["latency_ms"]
        row.update(deployed_size(target, role, art, m["size_bytes"], export, here))
        nncf_float = parents["qad"].metrics.get("float_layers", []) if role == "student_int8" and not device_file \
            else []  # the PT2E program quantizes every layer; NNCF's fallback layers are not in it
        row["layers_not_in_precision"] = layers_not_in_precision(m["runtime_facts"], nncf_float)
        rows.append(row)
        if task is not None:
            ctx.progress.advance(task)
    by_role = {r["role"]: r for r in rows}
    teacher_top1 = by_role["teacher_fp32"]["top1"]  # the compiled FP32 teacher on test, as reported
    required = cfg.accuracy.required(teacher_top1) if teacher_top1 is not None else None
    budgets = judge(target, by_role[final], required, here, len(eval_x))
    learned = chance_checks(by_role["teacher_fp32"]["top1"], by_role[final]["top1"], len(pre.class_names),
                            len(eval_x))
    budgets += learned
    notes += [c["message"] for c in learned]
    for r in rows:
        r["verdict"] = "-"
    from edgekd.report.summary import overall_verdict

    by_role[final]["verdict"] = overall_verdict(budgets)
    s32, s8 = by_role["student_fp32"], by_role["student_int8"]
    arms = [(comp_dir / comp.artifact(r).path, settings_for(target, by_role[r]["precision"],
                                                           device=None if here else "CPU"), comp.artifact(r).sha256)
            for r in ("student_fp32", "student_int8")]
    payoff = {**paired_speedup(*arms, comp.artifact("student_int8").facts["runtime"], eval_x[:target.batch_size]),
              "speedup_p50_separate": s32["latency"]["median_ms"] / s8["latency"]["median_ms"],
              "accuracy_cost_points": (s32["top1"] - s8["top1"]) * 100,
              "measured_with": s8["runtime"]}
    if s8.get("layers_not_in_precision"):
        payoff["layers_not_in_int8"] = [x["name"] for x in s8["layers_not_in_precision"]][:20]
    int8_onnx = export.artifact(export_name("student_int8")) if export.has(export_name("student_int8")) else None
    payoff.update(payoff_reasons(  # not faster: why, from the artifacts and this host (edgekd.benchmark.payoff)
        payoff, int8_onnx=export_dir / int8_onnx.path if int8_onnx else None, batch=target.batch_size,
        fp32_ms=s32["latency"]["median_ms"], runtime=comp.artifact("student_int8").facts["runtime"],
        settings=arms[1][1], x=eval_x[:target.batch_size], int8_layers=s8.get("layers_not_in_precision") or [],
        target=target, measured_here=here))
    unmeasured = comp.metrics.get("runtime_not_measured")
    if unmeasured:
        notes.append(unmeasured)
    metrics = {"rows": rows, "budgets": budgets, "int8_payoff": payoff, "sizes": size_comparison(rows),
               "measured_on_target": here, "student_input_size": list(pre.input_size),
               "teacher_input_size": list(tpre.input_size),
               "runtime_not_measured": unmeasured, "compiled_format": comp.metrics.get("format", "onnx"),
               "required_top1": required, "teacher_top1": teacher_top1, "reported_on": data.facts("test"),
               "teacher_top1_eval_set": by_role["teacher_fp32"]["top1_eval_set"], "eval_set": sample,
               "per_class": per_class(predictions[final], test.labels, list(pre.class_names), final,
                                      comp.artifact(final).path, by_role[final]["runtime"]),
               "decided_on": data.facts("val"),
               "methodology": METHODOLOGY + f" Batch {target.batch_size}; accuracy of each compiled artifact on the "
                              f"test split ({len(test):,} images, {data.origins['test']}), measured once; the "
                              f"accuracy requirement is the compiled FP32 teacher's test top-1 minus the allowed "
                              f"drop. Every decision (best epochs, PTQ vs QAD, fallback layers) was made on the val "
                              f"split ({len(data.val):,} images, {data.origins['val']}). The eval set shipped for "
                              f"devices (eval_set.npz) holds {sample_text(sample)}; top-1 measured on it (`edgekd "
                              f"bench` of a bundle) is on that sample."}
    art = make_artifact(ctx.work_dir, "eval_set", ArtifactKind.other, ctx.work_dir / "eval_set.npz",
                        images=sample["images"], of=sample["of"], split="test", cap=sample["cap"], seed=sample["seed"],
                        method=sample["method"])
    return Manifest(stage=NAME, id="", config={}, artifacts=[art], preprocessing=pre, metrics=metrics, notes=notes)


def deployed_size(target: TargetProfile, role: str, art, measured_bytes: int, export: Manifest, here: bool) -> dict:
    """Size of the file the target deploys for `role` (what the size budget is judged on): the compiled artifact
    when the target's own runtime wrote it (OpenVINO IR .xml + .bin, ONNX Runtime's optimised ONNX, the TensorRT
    engine, the .pte / .tflite); else the file the device builds its artifact from (the INT8 OpenVINO IR of the
    export stage, or the exported ONNX, QDQ for INT8), labelled as a stand-in. `size_measured` is False for a
    stand-in, and for an ONNX Runtime file optimised for this host's CPU (level 'all') when it is not the device."""
    runtime = target.runtime.name
    if art.facts.get("runtime") == runtime:
        companion = " + .bin" if art.path.endswith(".xml") else ""
        own = here or not art.facts.get("hardware_specific")
        return {"size_bytes": measured_bytes, "size_file": f"compile/{art.path}{companion}", "size_measured": own,
                "size_of": f"the {runtime} file the target deploys" + ("" if own else ", optimised for this CPU")}
    if runtime == "openvino" and role == "student_int8" and export.has("student_int8_openvino"):
        ir = export.artifact("student_int8_openvino")
        return {"size_bytes": ir.size_bytes + export.artifact("student_int8_openvino_bin").size_bytes,
                "size_file": f"export/{ir.path} + .bin", "size_measured": True,
                "size_of": "the openvino file the target deploys"}
    src = export.artifact(export_name(role))
    return {"size_bytes": src.size_bytes, "size_file": f"export/{src.path}", "size_measured": False,
            "size_of": f"the ONNX file the device builds its {runtime} artifact from (not built here)"}


def size_comparison(rows: list[dict]) -> dict:
    """FP32 against INT8 student, each the file the target deploys (or its stand-in), and their ratio."""
    by_role = {r["role"]: r for r in rows}
    fp32, int8 = by_role["student_fp32"], by_role["student_int8"]
    return {"fp32_bytes": fp32["size_bytes"], "int8_bytes": int8["size_bytes"],
            "int8_over_fp32": int8["size_bytes"] / fp32["size_bytes"] if fp32["size_bytes"] else None,
            "fp32_file": fp32.get("size_file"), "int8_file": int8.get("size_file"),
            "measured": bool(fp32.get("size_measured") and int8.get("size_measured"))}


def _top1(pred, labels) -> float | None:
    return float((pred == labels).mean()) if len(labels) else None


def per_class(pred, labels, class_names: list[str], role: str, path: str, runtime: str) -> dict:
    """Top-1 per class of the final artifact on the whole test split, from the bench measurement's predictions
    (report.html and report_assets/per_class.json show it; nothing runs the model again for it)."""
    import numpy as np

    classes = []
    for k, name in enumerate(class_names):
        mask = labels == k
        wrong = pred[mask][pred[mask] != k]
        confused = None
        if len(wrong):
            vals, counts = np.unique(wrong, return_counts=True)
            confused = f"{class_names[int(vals[counts.argmax()])]} ({int(counts.max())})"
        classes.append({"class": name, "n": int(mask.sum()),
                        "top1": float((pred[mask] == k).mean()) if mask.any() else None,
                        "most_confused_with": confused})
    return {"role": role, "artifact": f"{role} compile/{path} ({runtime})", "runtime": runtime.split()[0],
            "note": "", "top1": float((pred == labels).mean()),
            "images": int(len(labels)), "classes": classes}
