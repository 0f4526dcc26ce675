"""`edgekd compile PATH --target T`: build the target runtime's artifacts on the device itself.

- TensorRT: an engine per role from the ONNX (INT8 from the QDQ ONNX, explicit quantization) with the profile's
  builder options (precision flags, workspace, builder optimisation level) and a persistent timing cache
  (`compiled/T.timing.cache`, reused by every later build on this GPU); each engine gets its fingerprint file
  (edgekd.runtimes.tensorrt). When Polygraphy is installed, each engine's outputs are compared with ONNX
  Runtime's on the same inputs (Polygraphy's Comparator) and the result recorded.
- OpenVINO: IR for the profile's device (the bundle's own IR when it has one, else converted from the ONNX), then
  compiled on that device (CPU, GPU, NPU) with the profile's properties and exported as a device blob.
- ONNX Runtime: the graph optimised by ONNX Runtime on this machine (the 'all' level is hardware specific).

Everything is built in a temporary folder and renamed into place with compiled.json; an existing record whose
environment and files match this machine is reused (nothing rebuilt). No torch.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.devicebuild.environment import PACKAGES, current_environment
from edgekd.devicebuild.record import (
    RECORD_NAME, BuiltArtifact, BuiltFile, CompiledRecord, compile_command, compiled_root, damaged_files,
    environment_mismatch, read_record, write_record,
)  # fmt: skip
from edgekd.errors import UsageError, require
from edgekd.manifest import now_iso, sha256_file

FORMAT_OF = {"tensorrt": "trt_engine", "openvino": "openvino_ir", "onnxruntime": "onnx"}


def _sources(res: Any, runtime: str, target: Any) -> list[tuple[str, str, Any]]:
    """(role, precision, candidate) to build from, per role: the ONNX (QDQ for int8) or, for OpenVINO, the
    bundle's own IR where it has one."""
    out = []
    for role in res.roles():
        pool = [c for c in res.candidates if c.role == role and c.origin != "compile"]
        ir = [c for c in pool if c.format == "openvino_ir"]
        onnx = [c for c in pool if c.format == "onnx"]
        chosen = (ir or onnx) if runtime == "openvino" else onnx
        if not chosen:
            if role == "student_int8" and runtime == "tensorrt" and target.precision == "int8":
                raise UsageError(f"{res.path.name} has no QDQ ONNX of the INT8 student, which a TensorRT INT8 "
                                 f"engine is built from: export the bundle with its student_int8_qdq.onnx "
                                 f"(edgekd export-bundle), or pick a profile without int8")
            continue
        out.append((role, chosen[0].precision, chosen[0]))
    if not out:
        raise UsageError(f"{res.path} holds no ONNX{' or IR' if runtime == 'openvino' else ''} model to build "
                         f"{runtime} artifacts from")
    return out


def _settings(target: Any, precision: str, cache: Path) -> Any:
    from edgekd.benchmark import choose_precision, settings_for

    prec = choose_precision(target, precision, target.runtime.name, True, precision)
    base = settings_for(target, prec)
    extra = {"builder_optimization_level": target.runtime.builder_optimization_level, "timing_cache": str(cache)}
    from dataclasses import replace

    return replace(base, extra={**base.extra, **extra})


def _build_one(runtime: str, cand: Any, role: str, settings: Any, out: Path, x: np.ndarray | None) -> tuple[
        list[Path], dict[str, Any]]:
    """Build one role into `out`; (files with the main one first, facts)."""
    from edgekd.runtimes import get_runtime

    out.mkdir(parents=True)
    if runtime == "openvino":
        if cand.format == "openvino_ir":
            xml = out / "model.xml"
            shutil.copy2(cand.file, xml)
            shutil.copy2(cand.file.with_suffix(".bin"), xml.with_suffix(".bin"))
            facts = {"from": f"{cand.label} (the bundle's IR)"}
        else:
            built = get_runtime("openvino").compile(cand.file, out, settings)
            xml, facts = built.path, {k: v for k, v in built.facts.items() if not isinstance(v, dict)}
        blob, device_facts = _openvino_device_blob(xml, settings)
        return [xml, xml.with_suffix(".bin"), blob], {**facts, **device_facts}
    built = get_runtime(runtime).compile(cand.file, out, settings)
    facts = {k: v for k, v in built.facts.items() if k not in ("environment",)}
    files = [built.path] + [p for p in built.files if p != built.path and p.parent == out]
    if runtime == "tensorrt" and x is not None and cand.input_shape not in (None, tuple(x.shape[1:])):
        facts["polygraphy"] = {"compared": False, "why": f"takes {list(cand.input_shape)}; the eval set holds the "
                               f"student's {list(x.shape[1:])} images"}
    elif runtime == "tensorrt" and x is not None:
        facts["polygraphy"] = compare_with_onnxruntime(cand.file, built.path, x)
    return files, facts


def _openvino_device_blob(xml: Path, settings: Any) -> tuple[Path, dict[str, Any]]:
    """Compile the IR on the profile's device with its pinned properties and export the compiled blob
    (ov.CompiledModel.export_model; ov.Core.import_model reads it back on the same device and version)."""
    from edgekd.runtimes import get_runtime

    session = get_runtime("openvino").load(xml, settings)
    blob = xml.with_name(f"{xml.stem}.{settings.device.lower()}.blob")
    data = session.compiled_model.export_model()  # bytes, or a BytesIO in newer releases
    blob.write_bytes(data.getvalue() if hasattr(data, "getvalue") else bytes(data))
    return blob, {"device_properties": {k: str(v) for k, v in session.properties().items()},
                  "heavy_layer_precisions": session.layer_precisions()["heavy_counts"]}


def compare_with_onnxruntime(onnx_path: Path, engine: Path, x: np.ndarray, atol: float = 0.05,
                             rtol: float = 0.05) -> dict[str, Any]:
    """TensorRT vs ONNX Runtime on the same inputs with Polygraphy's Comparator (its own runners); a missing
    Polygraphy is recorded, not an error. UNVERIFIED (no GPU here): written against Polygraphy's documented API."""
    try:
        from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner
        from polygraphy.comparator import Comparator, CompareFunc
    except ImportError:
        return {"compared": False, "why": "polygraphy is not installed (pip install polygraphy)"}
    from edgekd.runtimes.base import read_onnx

    name = next(i.name for i in read_onnx(onnx_path).graph.input)
    feeds = [{name: np.ascontiguousarray(x[i:i + 1], dtype=np.float32)} for i in range(min(len(x), 8))]
    runners = [OnnxrtRunner(SessionFromOnnx(str(onnx_path))), TrtRunner(EngineFromBytes(engine.read_bytes()))]
    results = Comparator.run(runners, data_loader=feeds)
    ok = bool(Comparator.compare_accuracy(results, compare_func=CompareFunc.simple(atol=atol, rtol=rtol)))
    return {"compared": True, "passed": ok, "inputs": len(feeds), "atol": atol, "rtol": rtol,
            "tool": "polygraphy Comparator (OnnxrtRunner vs TrtRunner)"}


def _inputs(res: Any) -> np.ndarray | None:
    if res.eval_set is None or res.preprocessing is None:
        return None
    from edgekd.preprocess import NormalizedImages, read_eval_set

    images, _, pre = read_eval_set(res.eval_set)
    return np.asarray(NormalizedImages(images[:8], pre)[:8], dtype=np.float32)


def reusable(folder: Path, runtime: str, device: str, sources: list[tuple[str, str, Any]]) -> tuple[
        CompiledRecord | None, str]:
    """The existing record when it was built here from these very files, else (None, why it is rebuilt)."""
    record = read_record(folder)
    if record is None:
        return None, ""
    why = environment_mismatch(runtime, record.environment, current_environment(runtime, device))
    if why:
        return None, f"rebuilt: {why}"
    if bad := damaged_files(record, folder):
        return None, f"rebuilt: {bad[0]}"
    built = {a.role: a.source_sha256 for a in record.artifacts}
    now = {role: sha256_file(c.file) for role, _, c in sources}
    if built != now:
        return None, "rebuilt: the models it was built from changed"
    return record, ""


def compile_for_target(path: Path, target_name: str, force: bool = False) -> dict[str, Any]:
    """Build (or reuse) the target runtime's artifacts for PATH on this machine; the report."""
    from edgekd.artifacts import resolve, verify
    from edgekd.runtimes.identity import check_target
    from edgekd.targets import load_target

    target = load_target(target_name)
    runtime, device = target.runtime.name, target.runtime.device
    package, extra = PACKAGES[runtime]
    res = resolve(path)
    sources = _sources(res, runtime, target)  # bad input is said first, even where the runtime is missing
    require(package, extra, f"to compile for {target.name} ({runtime} on {device})")
    for _, _, cand in sources:
        verify(cand)  # sha256 against bundle.json / manifest before anything is built from it
    root = compiled_root(res.path)
    folder = root / target.name
    notes = []
    ident = check_target(target)
    if not ident.matches:
        notes.append(f"this machine is not {target.name}'s device ({ident.why}): what is built here is for this "
                     "machine, and bench measures it as a host")
    record, why = (None, "rebuilt: --force") if force else reusable(folder, runtime, device, sources)
    if record is not None:
        return _report(record, folder, reused=True, notes=notes)
    if why:
        notes.append(why)
    root.mkdir(parents=True, exist_ok=True)
    cache = root / f"{target.name}.timing.cache"
    x = _inputs(res) if runtime == "tensorrt" else None
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
    try:
        arts = []
        for role, precision, cand in sources:
            settings = _settings(target, precision, cache)
            files, facts = _build_one(runtime, cand, role, settings, work / role, x)
            arts.append(BuiltArtifact(
                role=role, precision=settings.precision, format=FORMAT_OF[runtime],
                files=[BuiltFile(path=f.relative_to(work).as_posix(), sha256=sha256_file(f),
                                 size_bytes=f.stat().st_size) for f in files],
                source=cand.label, source_sha256=sha256_file(cand.file), facts=_plain(facts)))
        from edgekd.runtimes.identity import host_facts

        record = CompiledRecord(target=target.name, runtime=runtime, device=device,
                                environment=current_environment(runtime, device), host=host_facts().summary(),
                                created_at=now_iso(), artifacts=arts, notes=notes)
        write_record(record, work)
        if folder.exists():
            shutil.rmtree(folder)
        work.rename(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _report(record, folder, reused=False, notes=notes)


def _plain(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


def _report(record: CompiledRecord, folder: Path, reused: bool, notes: list[str]) -> dict[str, Any]:
    return {"folder": str(folder), "record": str(folder / RECORD_NAME), "reused": reused, "notes": notes,
            **record.model_dump(mode="json"), "bench": f"edgekd bench {folder.parent.parent} --target {record.target}"}


__all__ = ["compile_for_target", "compare_with_onnxruntime", "compile_command"]
