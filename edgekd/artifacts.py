"""Resolve what a user points `edgekd bench` / `edgekd gate` at into a torch-free description.

Accepted inputs:

- a **run directory** written by `edgekd compress` (report.json naming the current stage folders, each with
  its manifest.json): candidates are the compile stage's artifacts (the target runtime's own, by role:
  teacher_fp32, student_fp32, student_int8) and the export stage's ONNX / IR files; the eval set is the
  bench stage's eval_set.npz;
- a **bundle folder** (bundle.json, read through edgekd.bundle.schema): its artifacts and eval set;
- a **single model file** (.onnx, .xml IR with its .bin, .ort, .plan engine), with an eval set passed
  separately (`--eval-set`) or none (latency only).

Every file is checked against the sha256 its manifest or bundle.json recorded before it is used
(`verify`): a model that changed after the run is refused with one line (exit 2), never measured.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from edgekd.accuracy import AccuracyRequirement
from edgekd.errors import UsageError
from edgekd.manifest import MANIFEST_NAME, Manifest, Preprocessing, sha256_file
from edgekd.model_roles import ROLE_PRECISION, ROLES, export_name, student_role
from edgekd.paths import require_file
from edgekd.stages.metrics import metrics_of

SUFFIX_FORMAT = {".onnx": "onnx", ".xml": "openvino_ir", ".ort": "ort", ".plan": "trt_engine",
                 ".engine": "trt_engine"}
FORMAT_RUNTIMES = {"onnx": ("onnxruntime", "openvino"), "openvino_ir": ("openvino",), "ort": ("onnxruntime",),
                   "trt_engine": ("tensorrt",), "pte": ("executorch",), "tflite": ("litert",)}
_KIND_FORMAT = {"openvino_ir": "openvino_ir", "trt_engine": "trt_engine", "onnx": "onnx", "ort_model": "onnx",
                "pte": "pte", "tflite": "tflite"}


@dataclass(frozen=True)
class Candidate:
    """One loadable artifact: its main file, companions, expected hashes and what can run it."""

    role: str
    file: Path  # main file (an IR: the .xml)
    format: str  # onnx | openvino_ir | ort | trt_engine
    precision: str  # fp32 | fp16 | int8
    runtimes: tuple[str, ...]  # runtimes that can load it, preferred first
    label: str  # how messages name it: "student_int8/model.xml", "models/x.onnx"
    origin: str  # compile | export | bundle | file
    compiled_for: str | None = None  # the runtime the run compiled it for (compile stage / bundle), else None
    expected: dict[Path, str] = field(default_factory=dict)  # file -> sha256 the manifest / bundle recorded
    labels: dict[Path, str] = field(default_factory=dict)  # file -> label in messages
    verify_with: Literal["manifest", "bundle.json", "nothing"] = "manifest"
    onnx: Path | None = None  # an ONNX file of the same model (for roofline estimates)
    top1: float | None = None  # recorded top-1 (bundle), for reference only
    hardware_specific: bool = False  # optimised for the CPU that compiled it (ORT level 'all'): not the device's
    # (C, H, W) the model takes, when the run or bundle recorded it: a teacher may take larger images than the
    # student, whose size the eval set and `Resolved.input_shape` are (edgekd.search.resolution)
    input_shape: tuple[int, ...] | None = None

    @property
    def sha256(self) -> str | None:
        return self.expected.get(self.file)

    @property
    def files(self) -> list[Path]:
        return [self.file] + [p for p in self.expected if p != self.file]


@dataclass(frozen=True)
class Resolved:
    kind: Literal["run", "bundle", "file"]
    path: Path
    preprocessing: Preprocessing | None
    eval_set: Path | None
    eval_sha256: str | None
    candidates: list[Candidate]
    input_shape: tuple[int, ...] | None  # (C, H, W)
    classes: list[str] | None
    run_target: str | None = None  # the target the run / bundle was made for
    teacher_top1: float | None = None  # the fine-tuned teacher's top-1 (for max-drop accuracy rules)
    # the accuracy requirement the run resolved (its --max-drop / --accuracy-floor, else its profile's defaults),
    # as recorded in its bench stage (or bundle.json); None for a lone file or a run from before it was recorded
    accuracy: AccuracyRequirement | None = None
    notes: list[str] = field(default_factory=list)

    def roles(self) -> list[str]:
        return sorted({c.role for c in self.candidates})

    def select(self, role: str, runtime: str | None = None, compiled_only: bool = False) -> Candidate | None:
        """The candidate for `role` that `runtime` can load: compiled artifacts first, then export files."""
        rank = {"compile": 0, "bundle": 0, "file": 0, "export": 1}
        pool = [c for c in self.candidates if c.role == role and (runtime is None or runtime in c.runtimes)]
        if compiled_only:
            pool = [c for c in pool if c.origin != "export"]
        pool.sort(key=lambda c: (rank[c.origin], 0 if runtime is None or c.runtimes[0] == runtime else 1))
        return pool[0] if pool else None

    def onnx_for(self, role: str) -> Path | None:
        for c in self.candidates:
            if c.role == role and c.onnx is not None:
                return c.onnx
        return None


def candidate_for(res: Resolved, role: str, runtime: str, side: str = "") -> Candidate:
    """The artifact of `role` that `runtime` can load; a TensorRT engine from elsewhere is refused by its
    fingerprint (edgekd.runtimes.tensorrt.verify_engine). `side` prefixes messages ("baseline ")."""
    engines = [c for c in res.candidates if c.role == role and c.format == "trt_engine"]
    cand = res.select(role, runtime)
    if engines and (runtime == "tensorrt" or cand is None):
        from edgekd.runtimes.tensorrt import trt_fingerprint, verify_engine

        verify_engine(engines[0].file, engines[0].sha256 or None, current=trt_fingerprint())
    if cand is None:
        have = sorted({f"{c.label} ({'/'.join(c.runtimes)})" for c in res.candidates if c.role == role})
        raise UsageError(f"{side}{res.path.name} has no {role} artifact that {runtime} can load "
                         f"(it has: {', '.join(have) or 'none'})")
    return cand


# ----------------------------------------------------------------------------------------------- verify
def verify(candidate: Candidate) -> None:
    """Refuse (UsageError, exit 2) a file that is missing or whose sha256 differs from its record."""
    for path in candidate.files:
        label = candidate.labels.get(path, path.name)
        if not path.is_file():
            raise UsageError(f"{label}: file is missing ({path})")
        want = candidate.expected.get(path)
        if want and sha256_file(path) != want:
            what = "bundle.json" if candidate.verify_with == "bundle.json" else "manifest"
            when = "the bundle was written" if what == "bundle.json" else "the run"
            raise UsageError(f"{label}: sha256 does not match its {what}: the file changed after {when}")


def verify_file(path: Path, expected: str | None, label: str, what: str = "manifest") -> None:
    if expected and path.is_file() and sha256_file(path) != expected:
        raise UsageError(f"{label}: sha256 does not match its {what}: the file changed after the run")


# ----------------------------------------------------------------------------------------------- shapes
def model_input_shape(path: Path) -> tuple[int, ...] | None:
    """(C, H, W) of the first input of an ONNX or IR file, read without any runtime; None when unknown."""
    try:
        if path.suffix == ".onnx":
            import onnx

            model = onnx.load(str(path), load_external_data=False)
            inits = {i.name for i in model.graph.initializer}
            inp = next(i for i in model.graph.input if i.name not in inits)
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in inp.type.tensor_type.shape.dim]
        elif path.suffix == ".xml":
            root = ET.parse(path).getroot()
            data = next(layer.find("data") for layer in root.iter("layer") if layer.get("type") == "Parameter")
            dims = [int(d) if d.strip().lstrip("-").isdigit() else -1 for d in data.get("shape", "").split(",")]
        else:
            return None
    except Exception:  # unreadable: the runtime will say why when it loads it
        return None
    rest = tuple(dims[1:])
    return rest if rest and all(d > 0 for d in rest) else None


def _has_quant_ops(path: Path) -> bool:
    """Whether a single model file is quantized; a file its format's parser cannot read is a UsageError."""
    from edgekd.runtimes.base import onnx_is_quantized, unreadable_model

    if path.suffix == ".onnx":
        return onnx_is_quantized(path)
    if path.suffix == ".xml":
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as exc:
            raise unreadable_model(path, exc, "OpenVINO IR") from None
        return any(layer.get("type") == "FakeQuantize" for layer in root.iter("layer"))
    return path.suffix in (".plan", ".engine")  # an engine's precision is its build's; treated as int8 here


# ----------------------------------------------------------------------------------------------- resolve
def resolve(path: Path | str, eval_set: Path | str | None = None) -> Resolved:
    """Describe a run directory, a bundle folder or a single model file (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path} does not exist")
    if path.is_dir():
        if (path / "bundle.json").is_file():
            res = _resolve_bundle(path)
        elif (path / "report.json").is_file() or any(path.glob(f"compile-*/{MANIFEST_NAME}")):
            res = _resolve_run(path)
        elif (path / MANIFEST_NAME).is_file():
            raise UsageError(f"{path} is one stage folder: pass the run directory above it ({path.parent})")
        else:
            raise UsageError(f"{path} has no report.json or stage manifests (not a run directory) and no "
                             "bundle.json (not a bundle): pass what edgekd compress or export-bundle wrote")
    else:
        res = _resolve_file(path)
    if eval_set is not None:
        res = _with_eval_set(res, Path(eval_set))
    return res


def _with_eval_set(res: Resolved, eval_path: Path) -> Resolved:
    from edgekd.preprocess import read_eval_set

    require_file(eval_path, "eval set", "an eval_set.npz file")
    try:
        images, _, pre = read_eval_set(eval_path)
    except Exception as exc:
        raise UsageError(f"eval set {eval_path} is not an edgekd eval_set.npz (images, labels, preprocessing): "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    shape = tuple(int(d) for d in images.shape[1:])
    if res.input_shape and res.input_shape != shape:
        raise UsageError(f"eval set {eval_path.name} holds images of shape {list(shape)} but {res.path.name} "
                         f"takes {list(res.input_shape)}")
    return Resolved(kind=res.kind, path=res.path, preprocessing=pre, eval_set=eval_path, eval_sha256=None,
                    candidates=res.candidates, input_shape=res.input_shape or shape, classes=pre.class_names,
                    run_target=res.run_target, teacher_top1=res.teacher_top1, notes=res.notes)


def _load_manifest(stage_dir: Path, run: Path) -> Manifest:
    file = stage_dir / MANIFEST_NAME
    if not file.is_file():
        raise UsageError(f"{run}: {stage_dir.name}/{MANIFEST_NAME} is missing (the run is incomplete or was "
                         "edited): rerun edgekd compress for it")
    try:
        return Manifest.model_validate_json(file.read_text())
    except (ValidationError, ValueError) as exc:
        raise UsageError(f"{run}: {stage_dir.name}/{MANIFEST_NAME} is not a valid manifest: "
                         f"{str(exc).splitlines()[0]}") from None


def _stage_dirs(run: Path) -> tuple[dict[str, Path], str | None]:
    report = run / "report.json"
    if report.is_file():
        try:
            data = json.loads(report.read_text())
            dirs = {s["stage"]: run / s["dir"] for s in data["stages"]}
            target = (data.get("target") or {}).get("name")
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{report} is not an edgekd report ({type(exc).__name__}: {exc})") from None
        return dirs, target
    dirs = {}
    for m in sorted(run.glob(f"*-*/{MANIFEST_NAME}"), key=lambda p: p.stat().st_mtime):
        dirs[m.parent.name.rsplit("-", 1)[0]] = m.parent  # newest stage folder of each name wins
    return dirs, None


def _resolve_run(run: Path) -> Resolved:
    dirs, target = _stage_dirs(run)
    if "compile" not in dirs:
        raise UsageError(f"{run}: the run has no compile stage (it stopped early): rerun edgekd compress")
    comp_dir = dirs["compile"]
    comp = _load_manifest(comp_dir, run)
    export_dir = dirs.get("export")
    export = _load_manifest(export_dir, run) if export_dir else None
    cands: list[Candidate] = []
    onnx_of: dict[str, Path] = {}
    if export is not None:
        for role in ROLES:
            if export.has(export_name(role)):
                onnx_of[role] = export_dir / export.artifact(export_name(role)).path
    shape_of = {role: _shape(export.artifact(export_name(role)).facts) for role in onnx_of} if export else {}
    for art in comp.artifacts:
        if art.name not in ROLES:
            continue
        main = comp_dir / art.path
        fmt = _KIND_FORMAT.get(art.kind.value, SUFFIX_FORMAT.get(main.suffix, "onnx"))
        expected = {main: art.sha256}
        labels = {main: art.path}
        for extra in comp.artifacts:  # companions: "student_int8:model.bin"
            if extra.name.startswith(f"{art.name}:"):
                p = comp_dir / extra.path
                expected[p], labels[p] = extra.sha256, extra.path
        rt = art.facts.get("runtime")
        runtimes = (rt,) + tuple(r for r in FORMAT_RUNTIMES.get(fmt, ()) if r != rt) if rt else FORMAT_RUNTIMES[fmt]
        if main.suffix == ".onnx" and rt == "onnxruntime":
            runtimes = ("onnxruntime",)  # ORT-optimised graph ('all' level): for ONNX Runtime on this CPU only
        cands.append(Candidate(role=art.name, file=main, format=fmt, precision=art.facts.get("precision",
                               ROLE_PRECISION[art.name]), runtimes=runtimes, label=labels[main], origin="compile",
                               compiled_for=rt, expected=expected, labels=labels, onnx=onnx_of.get(art.name),
                               hardware_specific=bool(art.facts.get("hardware_specific")),
                               input_shape=shape_of.get(art.name)))
    if export is not None:
        for role, path in onnx_of.items():
            art = export.artifact(export_name(role))
            cands.append(Candidate(role=role, file=path, format="onnx", precision=ROLE_PRECISION[role],
                                   runtimes=FORMAT_RUNTIMES["onnx"], label=f"{export_dir.name}/{art.path}",
                                   origin="export", expected={path: art.sha256},
                                   labels={path: f"{export_dir.name}/{art.path}"}, onnx=path,
                                   input_shape=shape_of.get(role)))
        if export.has("student_int8_openvino"):
            art = export.artifact("student_int8_openvino")
            xml = export_dir / art.path
            expected, labels = {xml: art.sha256}, {xml: f"{export_dir.name}/{art.path}"}
            if export.has("student_int8_openvino_bin"):
                b = export.artifact("student_int8_openvino_bin")
                expected[export_dir / b.path], labels[export_dir / b.path] = b.sha256, f"{export_dir.name}/{b.path}"
            cands.append(Candidate(role="student_int8", file=xml, format="openvino_ir", precision="int8",
                                   runtimes=("openvino",), label=labels[xml], origin="export", expected=expected,
                                   labels=labels, onnx=onnx_of.get("student_int8")))
    pre = comp.preprocessing or (export.preprocessing if export else None)
    eval_set, eval_sha, teacher_top1, accuracy = None, None, None, None
    if "bench" in dirs and (dirs["bench"] / MANIFEST_NAME).is_file():
        bench = _load_manifest(dirs["bench"], run)
        accuracy = recorded_requirement(bench.config.get("accuracy"), f"{dirs['bench'].name}/{MANIFEST_NAME}")
        if bench.has("eval_set"):
            art = bench.artifact("eval_set")
            eval_set, eval_sha = dirs["bench"] / art.path, art.sha256
        # on eval_set.npz (a sample of test since --eval-set-size): the images `edgekd bench RUN` measures on
        m = metrics_of(bench)
        teacher_top1 = m.teacher_top1_eval_set if m.teacher_top1_eval_set is not None else m.teacher_top1
    shape = (pre.channels, *pre.input_size) if pre else None
    return Resolved(kind="run", path=run, preprocessing=pre, eval_set=eval_set, eval_sha256=eval_sha,
                    candidates=cands, input_shape=shape, classes=pre.class_names if pre else None,
                    run_target=target, teacher_top1=teacher_top1, accuracy=accuracy, notes=list(comp.notes))


def _shape(facts: dict) -> tuple[int, ...] | None:
    """(C, H, W) from an artifact's recorded input_shape ["batch", C, H, W], None when not recorded."""
    dims = facts.get("input_shape") or []
    return tuple(int(d) for d in dims[1:]) if len(dims) == 4 and all(isinstance(d, int) for d in dims[1:]) else None


def _resolve_bundle(folder: Path) -> Resolved:
    from edgekd.bundle.verify import bundle_path, load_bundle

    bundle = load_bundle(folder)  # every path relative and inside the bundle
    for f in [f for a in bundle.artifacts for f in a.files] + [f for f in (bundle.eval_set,) if f]:
        bundle_path(folder, f.path, must_exist=False)  # a symbolic link or a path outside: UsageError
    onnx_of = {a.role: folder / a.files[0].path for a in bundle.artifacts if a.format == "onnx" and a.files}
    cands = []
    for a in bundle.artifacts:
        if not a.files or a.format not in FORMAT_RUNTIMES:
            continue  # mlpackage: Core ML is not one of edgekd's runtimes (it runs only on Apple OSes)
        files = [folder / f.path for f in a.files]
        cands.append(Candidate(
            role=a.role, file=files[0], format=a.format, precision=a.precision,
            runtimes=tuple(r for r in a.runtimes if r in ("openvino", "onnxruntime", "tensorrt", "executorch", "litert"))
            or FORMAT_RUNTIMES[a.format], label=a.files[0].path, origin="bundle",
            compiled_for=a.runtimes[0] if a.format != "onnx" and a.runtimes else None,
            expected={p: f.sha256 for p, f in zip(files, a.files)}, labels={p: f.path for p, f in zip(files, a.files)},
            verify_with="bundle.json", onnx=onnx_of.get(a.role), top1=a.top1, input_shape=_shape(a.facts)))
    teacher = next((a.top1 for a in bundle.artifacts if a.role == "teacher_fp32" and a.top1 is not None), None)
    shape = tuple(int(d) for d in bundle.input.shape[1:] if isinstance(d, int)) or None
    ev = bundle.eval_set
    target = bundle.pipeline.get("target") if isinstance(bundle.pipeline.get("target"), str) else None
    return Resolved(kind="bundle", path=folder, preprocessing=bundle.preprocessing,
                    eval_set=folder / ev.path if ev else None, eval_sha256=ev.sha256 if ev else None,
                    candidates=cands, input_shape=shape, classes=list(bundle.classes), run_target=target,
                    teacher_top1=teacher,
                    accuracy=recorded_requirement(bundle.pipeline.get("accuracy"), f"{folder.name}/bundle.json"))


def recorded_requirement(recorded: object, where: str) -> AccuracyRequirement | None:
    """The run's accuracy requirement as its bench stage config (or bundle.json's pipeline) records it."""
    if recorded is None:
        return None
    try:
        return AccuracyRequirement.model_validate(recorded)
    except ValidationError as exc:
        raise UsageError(f"{where}: the recorded accuracy requirement is not valid ({exc.errors()[0]['msg']})") from None


def _resolve_file(path: Path) -> Resolved:
    fmt = SUFFIX_FORMAT.get(path.suffix)
    if fmt is None:
        raise UsageError(f"{path.name}: not a model edgekd can run (.onnx, .xml with its .bin, .ort, .plan), "
                         "nor a run directory or bundle folder")
    files = {path: ""}
    if fmt == "openvino_ir":
        if not path.with_suffix(".bin").is_file():
            raise UsageError(f"{path.name}: the IR's weights {path.with_suffix('.bin').name} are not beside it")
        files[path.with_suffix(".bin")] = ""
    precision = "int8" if _has_quant_ops(path) else "fp32"
    role = student_role(precision)
    cand = Candidate(role=role, file=path, format=fmt, precision=precision, runtimes=FORMAT_RUNTIMES[fmt],
                     label=path.name, origin="file", compiled_for=None if fmt == "onnx" else FORMAT_RUNTIMES[fmt][0],
                     expected={p: "" for p in files}, labels={p: p.name for p in files}, verify_with="nothing",
                     onnx=path if fmt == "onnx" else None)
    return Resolved(kind="file", path=path, preprocessing=None, eval_set=None, eval_sha256=None, candidates=[cand],
                    input_shape=model_input_shape(path), classes=None)


def pick_role(res: Resolved, role: str | None) -> str:
    """The role asked for, or for a single file the one it has; unknown roles are a UsageError."""
    if res.kind == "file":
        return res.candidates[0].role  # a single file is what it is; its precision comes from its graph
    role = role or "student_int8"
    if role not in res.roles():
        raise UsageError(f"{res.path} has no artifact for role '{role}' (it has: {', '.join(res.roles()) or 'none'})")
    return role
