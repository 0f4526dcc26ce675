"""Checks of a bundle: file hashes (no runtime needed), reference outputs, and INT8-ness of each artifact.

- `check_files`: every file bundle.json lists exists and has its sha256, and bundle.json itself is intact
  (`content_sha256`, a hash of its own canonical content). Used by `edgekd inspect`.
- `runner`: loads one artifact with the runtimes installed here and returns `infer(x) -> logits`, or raises
  NotRunnable with the reason (a TensorRT plan without a GPU, Core ML off macOS, ...).
- `qdq_integer_report` / `openvino_integer_report` (edgekd.bundle.integer): whether the INT8 artifact is
  really integer where the format promises it, allowing the layers kept in float on purpose.
- `check_reference`: reload each artifact and compare it with reference.npz (what a device team does).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import numpy as np

from edgekd.bundle.integer import openvino_integer_report, qdq_integer_report  # noqa: F401 (re-exported)
from edgekd.bundle.schema import BUNDLE_JSON, Bundle, BundleArtifact, BundleFile
from edgekd.errors import UsageError
from edgekd.export.parity import compare_logits, tolerance_text, within_tolerance
from edgekd.manifest import sha256_file

Infer = Callable[[np.ndarray], np.ndarray]


class NotRunnable(Exception):
    """This artifact cannot be run on this machine (the reason is the message)."""


# ----------------------------------------------------------------------------------------------- hashes
def content_sha256(bundle: Bundle) -> str:
    data = bundle.model_dump(mode="json")
    data["content_sha256"] = None
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def load_bundle(bundle_dir: Path) -> Bundle:
    """bundle.json validated (every path relative and inside the bundle: edgekd.bundle.schema.check_relative)."""
    from edgekd.configio import read_model_json

    bundle_path(bundle_dir, BUNDLE_JSON, must_exist=False)
    return read_model_json(Path(bundle_dir) / BUNDLE_JSON, Bundle,
                           f"{bundle_dir} has no {BUNDLE_JSON}: not an edgekd bundle (or the file was removed)",
                           f"{bundle_dir}/{BUNDLE_JSON}: altered or not a valid edgekd bundle ({{why}})")


def unsafe_path(bundle_dir: Path, rel: str) -> str | None:
    """Why `rel` must not be followed (a symbolic link below the bundle folder, or a path resolving outside
    it), or None. Paths are relative and free of `..` already (schema.check_relative); this is the filesystem."""
    root, cur = Path(bundle_dir), Path(bundle_dir)
    for part in PurePosixPath(rel).parts:
        cur = cur / part
        if cur.is_symlink():
            return "a symbolic link; a bundle holds plain files only (not following it)"
    real_root = root.resolve()
    if cur.exists() and real_root != cur.resolve() and real_root not in cur.resolve().parents:
        return "resolves outside the bundle folder (not following it)"
    return None


def bundle_path(bundle_dir: Path, rel: str, must_exist: bool = True) -> Path:
    """The file `rel` of a bundle, or UsageError: `bench` and `inspect` never follow a bundle elsewhere."""
    why = unsafe_path(bundle_dir, rel)
    if why:
        raise UsageError(f"{Path(bundle_dir) / rel}: {why}")
    path = Path(bundle_dir) / rel
    if must_exist and not path.is_file():
        raise UsageError(f"{path}: listed in {BUNDLE_JSON} but missing")
    return path


def all_files(bundle: Bundle) -> list[BundleFile]:
    files = [f for a in bundle.artifacts for f in a.files]
    files += [f for f in (bundle.eval_set, bundle.reference) if f is not None]
    return files + list(bundle.extra_files)


def check_files(bundle_dir: Path, bundle: Bundle) -> list[str]:
    """One line per problem: bundle.json altered, a listed file missing, resized or with another sha256."""
    problems = []
    if bundle.content_sha256 and content_sha256(bundle) != bundle.content_sha256:
        problems.append(f"{BUNDLE_JSON}: altered (its content no longer matches its content_sha256)")
    for f in all_files(bundle):
        why = unsafe_path(bundle_dir, f.path)
        full = Path(bundle_dir) / f.path
        if why:
            problems.append(f"{f.path}: {why}")
        elif not full.is_file():
            problems.append(f"{f.path}: missing")
        elif full.stat().st_size != f.size_bytes or sha256_file(full) != f.sha256:
            problems.append(f"{f.path}: altered (sha256 does not match {BUNDLE_JSON})")
    return problems


def bundle_file(bundle_dir: Path, path: Path) -> BundleFile:
    return BundleFile(path=path.relative_to(bundle_dir).as_posix(), sha256=sha256_file(path),
                      size_bytes=path.stat().st_size)


# ---------------------------------------------------------------------------------------------- runners
_FORMAT_RUNTIME = {"onnx": "onnxruntime", "ort": "onnxruntime", "openvino_ir": "openvino", "pte": "executorch",
                   "tflite": "litert", "mlpackage": "coreml"}


def runner(bundle_dir: Path, art: BundleArtifact) -> Infer:
    """infer(x) for this artifact with a runtime available here (through get_runtime); NotRunnable says why not."""
    from edgekd.runtimes import get_runtime
    from edgekd.runtimes.base import RuntimeSettings

    main = bundle_path(bundle_dir, art.files[0].path)
    if art.format == "trt_engine":
        raise NotRunnable("a TensorRT plan runs only on the GPU and TensorRT version in its fingerprint")
    if art.format not in _FORMAT_RUNTIME:
        raise NotRunnable(f"no runner for format {art.format}")
    rt = get_runtime(_FORMAT_RUNTIME[art.format])
    if not rt.available():
        raise NotRunnable(rt.unavailable_reason())
    return rt.load(main, RuntimeSettings(device="CPU", precision=art.precision, threads=None)).infer


def run_batched(infer: Infer, x: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate([np.asarray(infer(x[i:i + batch])) for i in range(0, len(x), batch)])


# ------------------------------------------------------------------------------------------ comparisons
def compare(ref: np.ndarray, out: np.ndarray, precision: str) -> dict[str, Any]:
    """max_abs, max_rel, top-1 agreement and whether they are within the export stage's tolerance for
    this precision (edgekd.export.parity: the same rule at build time and on the device team's side)."""
    ref, out = np.asarray(ref, np.float64), np.asarray(out, np.float64)
    if ref.shape != out.shape:
        return {"ok": False, "why": f"output shape {list(out.shape)} != expected {list(ref.shape)}"}
    kind = precision if precision in ("int8", "fp16") else "fp32"
    m = compare_logits(ref, out)
    decided = m["top1_agreement_decided"]
    return {"ok": within_tolerance(kind, m), "max_abs": round(m["max_abs"], 7), "max_rel": round(m["max_rel"], 7),
            "top1_agreement": m["top1_agreement"], "nan_or_inf": m["nan_or_inf"],
            "top1_agreement_decided": decided, "decided_fraction": m["decided_fraction"],
            "tolerance": tolerance_text(kind).removeprefix("needs ")}


# --------------------------------------------------------------------------------------- reference check
def check_reference(bundle_dir: Path, bundle: Bundle) -> dict[str, dict[str, Any]]:
    """Reload every artifact, run reference.npz's inputs, compare with its expected outputs."""
    from edgekd.bundle.reference import read_reference

    ref = read_reference(bundle_path(bundle_dir, bundle.reference.path)) if bundle.reference else None
    if ref is None:
        raise UsageError("the bundle has no reference.npz")
    out: dict[str, dict[str, Any]] = {}
    for art in bundle.artifacts:
        if art.name not in ref["expected"]:
            why = (art.verified or {}).get("not_run")  # e.g. a .mlpackage bundled off macOS: nothing to compare
            out[art.name] = {"status": f"not run when bundled ({why}): no expected outputs in reference.npz" if why
                             else "no expected outputs in reference.npz"}
            continue
        try:
            got = runner(bundle_dir, art)(ref["inputs"])
        except NotRunnable as exc:
            out[art.name] = {"status": f"not run: {exc}"}
            continue
        cmp = compare(ref["expected"][art.name], got, art.precision)
        out[art.name] = {"status": "ok" if cmp["ok"] else "mismatch", **cmp}
    return out
