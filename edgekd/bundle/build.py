"""write_bundle: a run -> a verified bundle folder and its .tar.gz (see edgekd/bundle/schema.py).

The bundle is built in a temporary folder beside `out_dir` (`.<name>.tmp-<pid>`) and packed into a temporary
archive; only when both are complete (and flushed to disk) is the old archive removed, the folder renamed
into place and then the archive. A failed or killed export therefore never leaves a bundle that looks complete,
nor an archive of an older bundle beside a newer folder; a killed writer's leftovers are removed by the next
one once its pid is gone.
"""

from __future__ import annotations

import shutil
import tarfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.stages.metrics import QadMetrics, metrics_of
from edgekd.bundle.formats import WRITERS, Planned, parse_formats
from edgekd.bundle.integer import float_layer_names
from edgekd.bundle.mobile import (coreml_spec_report, fail_text, pt2e_references, pte_integer_report,
                                  tflite_integer_report)
from edgekd.bundle.reference import pick_samples, write_reference
from edgekd.bundle.run_info import RunView, open_run
from edgekd.bundle.schema import Bundle, BundleArtifact, BundleInput, LatencyClaim
from edgekd.bundle.verify import (NotRunnable, bundle_file, compare, content_sha256, openvino_integer_report,
                                  qdq_integer_report, run_batched, runner)
from edgekd.errors import MissingExtra, UsageError
from edgekd.fsio import fsync_path, publish, remove_dead_leftovers, tmp_name
from edgekd.manifest import library_versions, now_iso, verify_artifacts, write_json_atomic
from edgekd.preprocess import REFERENCE_SOURCE, NormalizedImages, read_eval_sample, read_eval_set, sample_text

REFERENCE_SAMPLES = 16
MOBILE_FORMATS = ("pte", "tflite", "mlpackage")
COMPARE_IMAGES = 512


def write_bundle(run_dir: Path, out_dir: Path, formats: list[str] | None = None, *, force: bool = False,
                 report: dict[str, Any] | None = None, tflite_io: str = "int8") -> Path:
    """Write the bundle folder `out_dir` (and `<out_dir>.tar.gz`) from a finished run; returns out_dir.

    formats: names from edgekd.bundle.formats.ALL_FORMATS (None: onnx, ort, openvino, and tensorrt when the
    run built a plan). report: the run's report when it is not (yet) the run's report.json (compress writes
    report.json only once the bundle exists). A missing package, an unknown format or a format that cannot
    hold the model is a UsageError (exit 2) before the bundle appears.
    """
    if tflite_io not in ("int8", "float"):
        raise UsageError(f"--tflite-io {tflite_io!r}: choose int8 or float")
    run = open_run(Path(run_dir), report)
    names = parse_formats(formats, run)
    for stage in ("finetune", "distill", "qad", "qad_pt2e", "export", "compile", "bench"):
        problems = verify_artifacts(run.manifest(stage), run.dirs[stage]) if run.has(stage) else []
        if problems:
            raise UsageError(f"run {run.run_dir}: {run.dirs[stage].name}/{problems[0]}; refusing to bundle it")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file, but a folder for the bundle is expected: choose another --out")
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise UsageError(f"{out_dir} exists and is not empty: choose another --out or pass --force to replace it")
    archive = out_dir.with_name(out_dir.name + ".tar.gz")
    for name in (out_dir.name, archive.name):  # what a killed writer left behind
        remove_dead_leftovers(out_dir.parent, name)
    tmp, part = tmp_name(out_dir), tmp_name(archive)
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "models").mkdir(parents=True)
    try:
        writers = {**WRITERS, "tflite": partial(WRITERS["tflite"], io=tflite_io)}
        planned = [p for name in names for p in writers[name](run, tmp / "models")]
        bundle = _assemble(run, tmp, planned, names)
        from edgekd.report.card import model_card

        (tmp / "model_card.md").write_text(model_card(bundle))
        shutil.copyfile(REFERENCE_SOURCE, tmp / "preprocess.py")  # the torch-free reference, standalone
        bundle.extra_files = [bundle_file(tmp, tmp / "model_card.md"), bundle_file(tmp, tmp / "preprocess.py")]
        bundle.archive = archive.name
        bundle.content_sha256 = content_sha256(bundle)
        write_json_atomic(tmp / "bundle.json", bundle.model_dump_json(indent=2))
        _pack(tmp, part, out_dir.name)
        archive.unlink(missing_ok=True)  # never an archive of an older bundle beside the new folder
        publish(tmp, out_dir)
        publish(part, archive)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        part.unlink(missing_ok=True)
    return out_dir


def _pack(folder: Path, part: Path, arcname: str) -> None:
    with tarfile.open(part, "w:gz") as tar:
        tar.add(folder, arcname=arcname)
    fsync_path(part)


def _assemble(run: RunView, root: Path, planned: list[Planned], names: list[str]) -> Bundle:
    bench_dir = run.dirs["bench"]
    shutil.copy2(bench_dir / run.manifest("bench").artifact("eval_set").path, root / "eval_set.npz")
    images, labels, pre = read_eval_set(root / "eval_set.npz")
    sample = read_eval_sample(root / "eval_set.npz")  # None: a run whose bench stage predates the sample
    eval_x = NormalizedImages(images, pre)  # normalised a batch at a time
    idx = pick_samples(labels, REFERENCE_SAMPLES)
    ref_x = eval_x[idx]
    cmp_x = eval_x[:COMPARE_IMAGES]  # independent references are compared on this many held-out images
    tpre = teacher_preprocessing(run, pre)  # None: the teacher takes the student's size (eval_set.npz's)
    teacher_x = cmp_x if tpre is None else other_size_inputs(tpre)
    torch_refs = _torch_references(run, cmp_x, teacher_x)
    artifacts, expected, failures, not_run = [], {}, [], []
    float_layers = declared_float_layers(run)
    qdq_out = None
    not_built = {p.name: p.error for p in planned if p.error}
    planned = [p for p in planned if not p.error]
    if any(p.format in MOBILE_FORMATS for p in planned):
        torch_refs.setdefault("student_int8", {}).update(pt2e_references(run, cmp_x))
    for p in planned:
        art = BundleArtifact(name=p.name, role=p.role, format=p.format, precision=p.precision, runtimes=p.runtimes,
                             files=[f for path in p.files for f in _files(root, path)], facts=p.facts,
                             latency=_latency(run, p))
        verified: dict[str, Any] = {"where": "this machine, CPU, at bundle time"}
        try:
            infer = runner(root, art)
            if tpre is not None and p.role == "teacher_fp32":  # its own size: not on the student's images
                out = run_batched(infer, teacher_x)
                art.top1, art.top1_runtime = _bench_top1(run, p, "top1_eval_set"), (_row(run, p.role) or {}).get("runtime")
                art.facts["input_shape"] = ["batch", tpre.channels, *tpre.input_size]
                verified["other_input_size"] = other_size_note(tpre, pre, len(teacher_x))
            else:
                expected[p.name] = run_batched(infer, ref_x)
                logits = run_batched(infer, eval_x)
                out = logits[:len(cmp_x)]
                art.top1 = float((logits.argmax(1) == labels).mean())
                art.top1_runtime = p.runtimes[0] if p.format != "openvino_ir" else "openvino CPU"
            verified["loaded_and_run"] = True
            ref_name = p.facts.get("reference") or ("pytorch_fp32" if p.precision == "fp32" else "pytorch_fake_quant")
            if ref_name in torch_refs.get(p.role, {}):
                verified[f"vs_{ref_name}"] = compare(torch_refs[p.role][ref_name], out, p.precision)
            if p.name == "student_int8_qdq":
                qdq_out = out
            elif p.precision == "int8" and qdq_out is not None:
                verified["vs_student_int8_qdq"] = compare(qdq_out, out, "int8")
                if p.format in MOBILE_FORMATS:  # another quantizer's model: how close, not a pass/fail
                    verified["vs_student_int8_qdq"].update(ok=None, note="NNCF's INT8 model vs the PT2E one: "
                                                           "information only")
            bench_top1 = _bench_top1(run, p)
            if bench_top1 is not None:
                verified["top1_in_run_bench"] = bench_top1  # on the whole test split
            bench_same = _bench_top1(run, p, "top1_eval_set")
            if bench_same is not None:
                verified["top1_in_run_bench_on_eval_set"] = bench_same  # the run's bench, on these same images
        except NotRunnable as exc:
            verified["loaded_and_run"] = False
            verified["not_run"] = str(exc)
            not_run.append(p.name)
        except (RuntimeError, ValueError) as exc:  # loads but does not run on its inputs: this file fails, not the run
            verified["loaded_and_run"] = False
            verified["error"] = fail_text(exc)
            failures.append(p.name)
        if p.precision == "int8" and p.format in ("onnx", "ort"):  # .ort: the same rule on ORT's own graph
            verified["integer"] = qdq_integer_report(root / art.files[0].path, float_layers)
        elif p.precision == "int8" and p.format == "openvino_ir":
            verified["integer"] = openvino_integer_report(root / art.files[0].path, float_layers=float_layers)
        elif p.precision == "int8" and p.format == "pte":
            verified["integer"] = pte_integer_report(p.facts)
        elif p.precision == "int8" and p.format == "tflite":
            verified["integer"] = tflite_integer_report(root / art.files[0].path)
        elif p.format == "mlpackage":
            spec = coreml_spec_report(p.files[0], p.precision, [1, pre.channels, *pre.input_size])
            verified["coreml_spec"] = {**spec, "ok": None}  # checked, never counted as verified
            if not spec["spec_ok"]:
                failures.append(p.name)
        elif p.format == "trt_engine":
            verified["fingerprint"] = {"ok": p.facts.get("fingerprint_matches_plan"),
                                       "note": "engine sha256 recorded at build time vs the bundled plan"}
        if p.precision == "int8" and p.format not in MOBILE_FORMATS:
            art.facts["float_layers"] = (verified.get("integer") or {}).get("float_layers_on_purpose", float_layers)
        checks = [v for v in verified.values() if isinstance(v, dict) and "ok" in v and v["ok"] is not None]
        verified["passed"] = bool(verified.get("loaded_and_run")) and all(c["ok"] for c in checks)
        if verified.get("loaded_and_run") and not verified["passed"]:
            failures.append(p.name)
        art.verified = verified
        artifacts.append(art)
    write_reference(root / "reference.npz", images[idx], ref_x, labels[idx], idx, expected)
    return Bundle(
        name=_name(run, root), created_at=now_iso(), classes=list(pre.class_names),
        input=BundleInput(shape=["batch", pre.channels, *pre.input_size]), preprocessing=pre,
        pipeline=_pipeline(run), artifacts=artifacts, eval_set=bundle_file(root, root / "eval_set.npz"),
        reference=bundle_file(root, root / "reference.npz"), versions=library_versions(),
        verification={"passed": not failures, "failed": failures, "not_run_here": not_run, "formats": names,
                      "not_built": not_built,
                      "reference_samples": len(idx), "eval_images": len(labels), "compared_images": len(cmp_x),
                      "method": "each artifact loaded back from the bundle folder; its outputs on the first "
                                f"{len(cmp_x)} held-out images compared with PyTorch (FP32: the checkpoint; INT8: "
                                "the fake-quant model) and, for INT8, with the QDQ ONNX; top-1 on the whole eval set"
                                + (f" ({sample_text(sample)})" if sample else "")},
        eval_set_sample=sample, teacher_preprocessing=tpre,
    )


def teacher_preprocessing(run: RunView, pre):
    """The teacher's preprocessing when it takes another input size than the student's `pre` (a student at a
    smaller input: edgekd.search.resolution), else None. The fine-tune stage's record is the data's size."""
    if not run.has("finetune"):
        return None
    tpre = run.manifest("finetune").preprocessing
    return tpre if tpre is not None and tuple(tpre.input_size) != tuple(pre.input_size) else None


def other_size_inputs(tpre, n: int = 8) -> np.ndarray:
    """Inputs at the teacher's size for comparing its files with its checkpoint: eval_set.npz is the student's
    size, and the teacher's images are not in the bundle (seeded normal noise, the normalised inputs' scale)."""
    return np.random.default_rng(0).standard_normal((n, tpre.channels, *tpre.input_size)).astype(np.float32)


def other_size_note(tpre, pre, n: int) -> str:
    (th, tw), (h, w) = tpre.input_size, pre.input_size
    return (f"takes the teacher's {th}x{tw} input (teacher_preprocessing); eval_set.npz and reference.npz hold the "
            f"student's {h}x{w} images, so it has no expected outputs there: compared with its checkpoint on {n} "
            f"random {th}x{tw} inputs; top-1 is the run's bench on the eval set's images decoded at {th}x{tw}")


def _name(run: RunView, root: Path) -> str:
    """The bundle's name: its folder's, or the run's when the folder has the default name `bundle`."""
    name = root.name.lstrip(".").split(".tmp-")[0]
    return Path(run.run_dir).resolve().name if name == "bundle" else name


def declared_float_layers(run: RunView) -> list[str]:
    """Layers the qad stage kept in floating point on purpose (its manifest's `float_layers`, else the
    quantized checkpoint's `ignored_layers`), read defensively: an INT8 artifact may hold exactly these in float."""
    if not run.has("qad"):
        return []
    q = run.manifest("qad")
    names = float_layer_names(metrics_of(q).float_layers)
    if not names and q.has("quantized"):
        names = float_layer_names(q.artifact("quantized").facts.get("ignored_layers"))
    if run.has("distill"):  # squeeze-excitation convs NNCF never quantizes (edgekd.models.family)
        names += [n for n in metrics_of(run.manifest("distill")).float_layers_declared if n not in names]
    return names


def _files(root: Path, path: Path) -> list:
    if path.is_dir():  # a .mlpackage is a folder
        return [bundle_file(root, f) for f in sorted(path.rglob("*")) if f.is_file()]
    return [bundle_file(root, path)]


def _row(run: RunView, role: str) -> dict[str, Any] | None:
    return next((r for r in run.report.get("models", []) if r.get("role") == role), None)


def _bench_top1(run: RunView, p: Planned, key: str = "top1") -> float | None:
    row = _row(run, p.role)
    return None if row is None or row.get("precision") != p.precision else row.get(key)


def _latency(run: RunView, p: Planned) -> list[LatencyClaim]:
    row = _row(run, p.role)
    if row is None or row.get("precision") != p.precision:
        return []
    target = run.target.get("name", "?")
    runtime = str(row.get("runtime", ""))
    fmt_runtime = {"openvino_ir": "openvino", "trt_engine": "tensorrt", "pte": "executorch",
                   "tflite": "litert"}.get(p.format, "onnxruntime")
    claims = []
    lat = row.get("latency") or {}
    if lat and runtime.startswith(fmt_runtime) and p.format in ("onnx", "openvino_ir", "trt_engine", "pte", "tflite"):
        where = "this run's host" if row.get("measured_on") != "target" else target
        for pct, key in (("p50", "median_ms"), ("p90", "p90_ms")):
            if lat.get(key) is not None:
                claims.append(LatencyClaim(target=target, percentile=pct, value_ms=float(lat[key]), basis="measured",
                                           runtime=runtime, note=f"measured on {where} ({row.get('measured_on')}), "
                                                                 f"batch {row.get('batch', 1)}, file {row.get('file')}"))
    est = row.get("estimated_latency_ms")
    if est is not None and p.format in ("onnx", "trt_engine", "pte", "tflite"):
        claims.append(LatencyClaim(target=target, percentile="p50", value_ms=float(est), basis="estimated",
                                   runtime=str(run.target.get("runtime")), note="roofline estimate for the target "
                                   "device; not measured"))
    return claims


def _pipeline(run: RunView) -> dict[str, Any]:
    opts = run.report.get("options", {})
    q = metrics_of(run.manifest("qad")) if run.has("qad") else QadMetrics.model_construct()
    teacher_cfg = run.manifest("teacher").config if run.has("teacher") else {}
    return {
        "teacher": {"arch": teacher_cfg.get("arch", opts.get("teacher")), "pretrained": opts.get("pretrained"),
                    "weights": opts.get("teacher_weights")},
        "transfer": opts.get("transfer"), "student": opts.get("student"),
        "losses": {"kd": {"temperature": opts.get("temperature"), "alpha": opts.get("alpha")},
                   "attention": opts.get("attention"), "hint": opts.get("hint"), "weighting": opts.get("weighting")},
        "quantization": {"method": "NNCF INT8 (symmetric per-channel weights, per-tensor activations)",
                         "kept": getattr(q, "kept", None), "fp32_top1": getattr(q, "fp32_top1", None),
                         "ptq_top1": getattr(q, "ptq_top1", None), "qad_top1": getattr(q, "qad_top1", None),
                         "calibration_images": getattr(q, "calibration_images", None)},
        "quantization_pt2e": metrics_of(run.manifest("qad_pt2e")).routes if run.has("qad_pt2e") else None,
        "float_layers": declared_float_layers(run),
        # the requirement the run judged by (its --max-drop / --accuracy-floor or its profile's defaults): what
        # `edgekd bench BUNDLE` judges by too
        "accuracy": run.manifest("bench").config.get("accuracy") if run.has("bench") else None,
        "target": run.target.get("name"), "data": run.report.get("data", {}).get("description"),
        "splits": run.report.get("data", {}).get("splits"),  # role -> images, origin (val decided, test reported)
        "stages": {s["stage"]: s["id"] for s in run.report.get("stages", [])},
        "run_dir": str(run.run_dir),
    }


def _torch_references(run: RunView, x: np.ndarray, teacher_x: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """PyTorch outputs on the reference inputs: FP32 teacher (on `teacher_x`, its size) and student, and the
    fake-quant INT8 student."""
    try:
        import torch

        from edgekd.models.checkpoint import load_edgekd_checkpoint
    except ImportError:
        return {}
    out: dict[str, dict[str, np.ndarray]] = {}
    with torch.no_grad():
        xt = torch.from_numpy(x)
        for role, stage, inp in (("teacher_fp32", "finetune", torch.from_numpy(teacher_x)),
                                 ("student_fp32", "distill", xt)):
            model, _ = load_edgekd_checkpoint(run.path(stage, "model"))
            out[role] = {"pytorch_fp32": model.eval()(inp).numpy()}
        try:
            from edgekd.quant.nncf_quant import load_quantized

            student, _ = load_edgekd_checkpoint(run.path("distill", "model"))
            q = load_quantized(student.eval(), run.path("qad", "quantized"), xt[:2]).eval()
            out["student_int8"] = {"pytorch_fake_quant": q(xt).numpy()}
        except (ImportError, MissingExtra):  # nncf missing: INT8 artifacts are compared with each other only
            pass
    return out
