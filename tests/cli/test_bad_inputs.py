"""A catalogue of bad inputs, one row each: data, target files, options, checkpoints, model files, bundles,
tar files and run directories.

Every row must give exactly one line on stderr, no traceback, exit 2, and leave the run directory (or bundle)
it names byte-for-byte unchanged: every file under it is hashed before and after. Rows that pass a fresh
`--run-dir` check that it was not created. No row trains anything: the run directory and the bundle are
built from tiny exported conv nets (tests/cli/test_bench_cmd.build_run), so the file runs in seconds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from typer.testing import CliRunner

from edgekd.cli.app import _register, app

sys.path.insert(0, str(Path(__file__).parent))
from test_bench_cmd import build_run  # noqa: E402

from tests.tarfiles import archive, member  # noqa: E402

_register()
runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
EXP, BENCH = "export-aaaaaaaaaaaa", "bench-cccccccccccc"


# ------------------------------------------------------------------------------------------------ fixtures
def fake_bundle(folder: Path, run: Path, long_class: str | None = None, int8_verified: dict | None = None) -> Path:
    """A bundle folder laid out as export-bundle writes it, from the fake run's ONNX files (no training);
    `long_class` replaces the first class name, `int8_verified` is the INT8 artifact's verification record."""
    from edgekd.bundle.schema import Bundle, BundleArtifact, BundleInput
    from edgekd.bundle.verify import bundle_file, content_sha256
    from edgekd.preprocess import read_eval_set, write_eval_set
    from edgekd.report.card import model_card

    (folder / "models").mkdir(parents=True)
    for name in ("student_fp32", "student_int8_qdq"):
        shutil.copy(run / EXP / f"{name}.onnx", folder / "models" / f"{name}.onnx")
    images, labels, pre = read_eval_set(run / BENCH / "eval_set.npz")
    if long_class:
        pre = pre.model_copy(update={"class_names": [long_class, *pre.class_names[1:]]})
    write_eval_set(folder / "eval_set.npz", images, labels, pre)
    arts = [BundleArtifact(name=n, role=r, format="onnx", precision=p, runtimes=["onnxruntime", "openvino"],
                           files=[bundle_file(folder, folder / "models" / f"{n}.onnx")])
            for n, r, p in (("student_fp32", "student_fp32", "fp32"), ("student_int8_qdq", "student_int8", "int8"))]
    arts[1].verified = int8_verified or {}
    bundle = Bundle(name=folder.name, created_at="2026-01-01T00:00:00+00:00", classes=list(pre.class_names),
                    input=BundleInput(shape=["batch", pre.channels, *pre.input_size]), preprocessing=pre,
                    pipeline={"target": "intel-cpu"}, artifacts=arts,
                    eval_set=bundle_file(folder, folder / "eval_set.npz"), verification={"passed": True})
    (folder / "model_card.md").write_text(model_card(bundle))
    bundle.extra_files = [bundle_file(folder, folder / "model_card.md")]
    bundle.content_sha256 = content_sha256(bundle)
    (folder / "bundle.json").write_text(bundle.model_dump_json(indent=2))
    return folder


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("catalogue")
    run = build_run(root / "run")
    return {"run": run, "bundle": fake_bundle(root / "bundle", run)}


@dataclass
class Env:
    tmp: Path
    run: Path  # a private copy of the fake run directory
    bundle: Path  # a private copy of the fake bundle
    fresh: Path  # a run directory that does not exist yet

    def file(self, name: str, data: bytes | str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path


def tree_state(root: Path) -> dict[str, str] | None:
    """Every entry under root: sha256 of files, target of links, 'dir' for folders (None: root is absent)."""
    if not root.exists():
        return None
    if root.is_file():
        return {".": hashlib.sha256(root.read_bytes()).hexdigest()}
    state = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            state[rel] = "link:" + os.readlink(p)
        elif p.is_dir():
            state[rel] = "dir"
        else:
            state[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return state


# ------------------------------------------------------------------------------------------------- inputs
def _png(path: Path, seed: int = 0) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)


def _image_tree(env: Env, classes=("cat", "dog"), per_class: int = 3) -> Path:
    for c in classes:
        for i in range(per_class):
            _png(env.tmp / "data" / c / f"{i}.png", i)
    return env.tmp / "data"


def _target_yaml(env: Env, edit: Callable[[str], str]) -> Path:
    return env.file("mine.yaml", edit((ROOT / "targets" / "intel-cpu.yaml").read_text()))


def _checkpoint(env: Env, obj) -> Path:
    import torch

    path = env.tmp / "ckpt.pt"
    torch.save(obj, path)
    return path


class _Opaque:  # a class a weights_only load must refuse
    pass


def _after(path: Path, data: bytes, args: list[str], watched: Path) -> tuple[list[str], Path]:
    """Write `data` into `path` (the damage), then run `args`."""
    path.write_bytes(data)
    return args, watched


def _edited_bundle(env: Env, new_path: str, command: str) -> tuple[list[str], Path]:
    """bundle.json naming `new_path` for the INT8 model: a hostile bundle pointing outside itself."""
    path = env.bundle / "bundle.json"
    text = path.read_text()
    assert '"models/student_int8_qdq.onnx"' in text
    path.write_text(text.replace('"models/student_int8_qdq.onnx"', new_path, 1))
    return (["inspect", str(env.bundle)] if command == "inspect" else _bench(env, str(env.bundle))), env.bundle


def _tar(env: Env, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    return archive(env.tmp / "evil.tar.gz", *members)


def _packed_bundle(env: Env) -> Path:
    path = env.tmp / "bundle.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(env.bundle, arcname=env.bundle.name)
    return path


def _compress(env: Env, *args: str, run: Path | None = None) -> tuple[list[str], Path]:
    run = run or env.fresh
    return ["compress", *args, "--run-dir", str(run), "-q"], run


def _bench(env: Env, *args: str) -> list[str]:
    return ["bench", *args, "--target", "intel-cpu", "--min-s", "0.01"]


@dataclass
class Case:
    id: str
    make: Callable[[Env], tuple[list[str], Path]]  # -> (argv, the run directory / bundle that must not change)
    needles: tuple[str, ...] = ()
    marks: tuple = ()


def _data_file(env: Env):
    return _compress(env, "--data", str(env.file("images.zip", b"PK\x03\x04")))


def _one_class(env: Env):
    return _compress(env, "--data", str(_image_tree(env, classes=("only",))))


def _empty_class(env: Env):
    data = _image_tree(env)
    (data / "empty").mkdir()
    return _compress(env, "--data", str(data))


def _broken_image(env: Env):
    data = _image_tree(env)
    (data / "dog" / "broken.jpg").write_bytes(b"not an image at all")
    return _compress(env, "--data", str(data), "--strict-data")  # without it: skipped with a warning


def _no_class_folders(env: Env):
    (env.tmp / "flat").mkdir()
    _png(env.tmp / "flat" / "a.png")
    return _compress(env, "--data", str(env.tmp / "flat"))


def _wrong_arch_checkpoint(env: Env):
    from edgekd.models.registry import build_model

    ckpt = _checkpoint(env, build_model("small_cnn", num_classes=10, in_channels=1).state_dict())
    return _compress(env, "--teacher", "cifar_resnet20", "--teacher-weights", str(ckpt))


def _tampered_run_artifact(env: Env):
    xml = env.run / "compile-bbbbbbbbbbbb" / "student_int8" / "model.xml"
    xml.write_text(xml.read_text().replace("</net>", "<!-- edited --></net>"))
    return _bench(env, str(env.run)), env.run


def _truncated_ir_bin(env: Env):
    ir = env.tmp / "ir"
    ir.mkdir()
    src = env.run / "compile-bbbbbbbbbbbb" / "student_fp32"
    shutil.copy(src / "model.xml", ir / "model.xml")
    (ir / "model.bin").write_bytes((src / "model.bin").read_bytes()[:64])
    return _bench(env, str(ir / "model.xml")), env.run


def _engine_with_fingerprint(env: Env, fingerprint: str) -> Path:
    engine = env.file("model.plan", b"not really an engine")
    env.file("model.plan.fingerprint.json", fingerprint)
    return engine


def _symlinked_bundle_model(env: Env):
    model = env.bundle / "models" / "student_int8_qdq.onnx"
    outside = env.tmp / "outside.onnx"
    shutil.move(model, outside)
    model.symlink_to(outside)
    return _bench(env, str(env.bundle)), env.bundle


def _read_only_run(env: Env):
    for p in [env.run, *env.run.rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)
    return ["export-bundle", str(env.run), "--formats", "onnx", "--out", str(env.run / "bundle")], env.run


CASES = [
    # data
    Case("data-missing", lambda e: _compress(e, "--data", str(e.tmp / "nope")), ("does not exist",)),
    Case("data-is-a-file", _data_file, ("is a file", "folder")),
    Case("data-one-class", _one_class, ("at least 2",)),
    Case("data-empty-class-folder", _empty_class, ("empty", "has no images")),
    Case("data-unreadable-image", _broken_image, ("broken.jpg", "unreadable", "--strict-data")),
    Case("data-no-class-folders", _no_class_folders, ("no class sub-folders",)),
    # target files
    Case("target-unknown-name", lambda e: _compress(e, "--target", "jetsn"), ("did you mean jetson",)),
    Case("target-emoji-like-name", lambda e: _compress(e, "--target", "a:b:c"), ("'a:b:c'",)),
    Case("target-unknown-field", lambda e: _compress(e, "--target", str(_target_yaml(e, lambda t: t + "\nturbo: true\n"))),
         ("unknown field 'turbo'",)),
    Case("target-invalid-value", lambda e: _compress(e, "--target", str(_target_yaml(
        e, lambda t: t.replace("precision: int8", "precision: int4")))), ("precision",)),
    Case("target-not-yaml", lambda e: _compress(e, "--target", str(_target_yaml(e, lambda t: "name: [unclosed\n"))),
         ("not valid YAML",)),
    Case("target-missing-file", lambda e: _compress(e, "--target", str(e.tmp / "nope.yaml")), ("does not exist",)),
    Case("target-is-a-folder", lambda e: _compress(e, "--target", str(e.tmp) + os.sep), ("is a folder",)),
    # options (checked before any stage runs; some against an existing run, which must not change)
    Case("option-alpha-out-of-range", lambda e: _compress(e, "--alpha", "1.5", run=e.run), ("alpha",)),
    Case("option-temperature-zero", lambda e: _compress(e, "--temperature", "0", run=e.run), ("temperature",)),
    Case("option-attention-malformed", lambda e: _compress(e, "--student", "small_cnn", "--attention", "layer3"), ("STUDENT_LAYER:TEACHER_LAYER",)),
    Case("option-attention-unknown-layer", lambda e: _compress(e, "--student", "small_cnn", "--attention", "features.9:layer3"),
         ("layer 'features.9' not found",)),
    Case("option-unknown-teacher", lambda e: _compress(e, "--teacher", "resnt18", run=e.run), ("unknown model",)),
    Case("option-unknown-student", lambda e: _compress(e, "--student", "nosuchnet"), ("unknown model 'nosuchnet'",)),
    Case("option-unknown-in-config", lambda e: _compress(e, "--config", str(e.file("p.yaml", "turbo: 1\n"))),
         ("unknown option 'turbo'",)),
    Case("option-not-an-integer", lambda e: _compress(e, "--epochs", "a:b:c", run=e.run), ("'--epochs'", "integer")),
    Case("option-unknown-flag", lambda e: _compress(e, "--turbo"), ("No such option: --turbo",)),
    Case("option-bad-choice", lambda e: _compress(e, "--transfer", "sideways"), ("'--transfer'",)),
    Case("option-source-classes-out-of-range", lambda e: _compress(e, "--config", str(e.file(
        "p.yaml", "source_classes: 50\n"))), ("source_classes (from the --config file) must be between 2 and 10",)),
    Case("option-config-is-a-folder", lambda e: _compress(e, "--config", str(e.tmp)), ("is a folder",)),
    # checkpoints
    Case("checkpoint-random-bytes", lambda e: _compress(e, "--teacher-weights", str(e.file(
        "r.pt", np.random.default_rng(0).bytes(4096)))), ("not a readable PyTorch checkpoint",)),
    Case("checkpoint-pickled-object", lambda e: _compress(e, "--teacher-weights", str(_checkpoint(e, {"a": _Opaque()}))),
         ("pickled Python objects",)),
    Case("checkpoint-is-a-folder", lambda e: _compress(e, "--teacher-weights", str(e.tmp)), ("is a folder",)),
    Case("checkpoint-wrong-architecture", _wrong_arch_checkpoint, ("does not fit",)),
    # model files
    Case("model-text-named-onnx", lambda e: (_bench(e, str(e.file("fake.onnx", "hello"))), e.run),
         ("fake.onnx", "not a readable ONNX model")),
    Case("gate-candidate-text-named-onnx", lambda e: (["gate", "--baseline", str(e.run / EXP / "student_fp32.onnx"),
                                                        "--candidate", str(e.file("fake.onnx", "hello")),
                                                        "--target", "intel-cpu"], e.run),
         ("fake.onnx", "not a readable ONNX model")),
    Case("model-text-named-ort", lambda e: (["bench", str(e.file("fake.ort", "hello")), "--target", "cpu-ort",
                                             "--eval-set", str(e.run / BENCH / "eval_set.npz"), "--min-s", "0.01"],
                                            e.run), ("fake.ort", "not a readable ORT-format model")),
    Case("model-ir-with-truncated-bin", _truncated_ir_bin, ("model.xml", "not a readable OpenVINO IR model")),
    Case("model-engine-fingerprint-not-json", lambda e: (["bench", str(_engine_with_fingerprint(e, "{oops")), "--target",
                                                          "jetson"], e.run), ("not a readable fingerprint",)),
    Case("model-unknown-suffix", lambda e: (_bench(e, str(e.file("model.txt", "x"))), e.run), ("not a model",)),
    Case("eval-set-is-a-folder", lambda e: (_bench(e, str(e.run / EXP / "student_fp32.onnx"), "--eval-set",
                                                    str(e.tmp)), e.run), ("is a folder",)),
    # bundles
    Case("bundle-absolute-path", lambda e: _edited_bundle(e, '"/etc/passwd"', "inspect"), ("is absolute",)),
    Case("bundle-dotdot-path", lambda e: _edited_bundle(e, '"../../x.onnx"', "bench"), ("leaves the bundle",)),
    Case("bundle-symlinked-model", _symlinked_bundle_model, ("symbolic link",)),
    Case("bundle-json-not-json", lambda e: _after(e.bundle / "bundle.json", b"{not json", ["inspect", str(e.bundle)],
                                                  e.bundle), ("bundle.json",)),
    Case("bundle-model-altered", lambda e: _after(e.bundle / "models" / "student_fp32.onnx", b"x",
                                                  ["inspect", str(e.bundle)], e.bundle), ("altered",)),
    # tar files
    Case("tar-dotdot-member", lambda e: (["inspect", str(_tar(e, [(member("b/../../evil.txt"), b"abc")]))], e.tmp),
         ("'..'",)),
    Case("tar-absolute-symlink", lambda e: (["inspect", str(_tar(e, [(member("b", tarfile.DIRTYPE), None), (
        member("b/link", tarfile.SYMTYPE, "/etc/passwd"), None)]))], e.tmp), ("symbolic link",)),
    Case("tar-device-member", lambda e: (["inspect", str(_tar(e, [(member("b/dev", tarfile.CHRTYPE), None)]))], e.tmp),
         ("device",)),
    Case("tar-not-gzip", lambda e: (["inspect", str(e.file("b.tar.gz", "hello"))], e.tmp), ("not a readable",)),
    Case("tar-truncated", lambda e: (["inspect", str(e.file("t.tar.gz", _packed_bundle(e).read_bytes()[:900]))], e.tmp),
         ("not a readable",)),
    # run directories
    Case("run-artifact-tampered", _tampered_run_artifact, ("sha256 does not match",)),
    Case("run-stage-folder-given", lambda e: (_bench(e, str(e.run / BENCH)), e.run), ("one stage folder",)),
    Case("run-report-corrupt", lambda e: _after(e.run / "report.json", b"{", _bench(e, str(e.run)), e.run),
         ("not an edgekd report",)),
    Case("run-export-bundle-of-a-file", lambda e: (["export-bundle", str(e.file("r.txt", "x")), "--out",
                                                    str(e.tmp / "b")], e.tmp), ("is a file",)),
    Case("run-export-bundle-out-is-a-file", lambda e: (["export-bundle", str(e.run), "--formats", "onnx", "--out",
                                                        str(e.file("out.txt", "x"))], e.run), ("is a file",)),
    Case("run-dir-is-a-file", lambda e: _compress(e, run=e.file("run.txt", "x")), ("is a file",)),
    # as root (CI here) see tests/test_run_repair.py, which runs the command as an unprivileged user
    Case("run-dir-read-only", _read_only_run, ("read-only",),
         (pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permission bits"),)),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input(case: Case, base, tmp_path: Path) -> None:
    env = Env(tmp=tmp_path / "in", run=tmp_path / "run", bundle=tmp_path / "bundle", fresh=tmp_path / "fresh-run")
    env.tmp.mkdir()
    shutil.copytree(base["run"], env.run)
    shutil.copytree(base["bundle"], env.bundle)
    args, watched = case.make(env)
    before = tree_state(watched)
    try:
        result = runner.invoke(app, args)
    finally:
        for p in [env.run, *env.run.rglob("*")]:  # undo a read-only case so that tmp_path can be removed
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | 0o200)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert len(lines) == 1, result.stderr
    for needle in case.needles:
        assert needle in lines[0], lines[0]
    assert tree_state(watched) == before, f"{watched} changed"
    if watched == env.fresh:
        assert not env.fresh.exists(), "a refused compress created its run directory"


def test_catalogue_is_large_and_distinct() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 30
    assert len({c.id.split("-")[0] for c in CASES}) >= 8  # data, target, option, checkpoint, model, bundle, tar, run


@pytest.mark.parametrize("make", [
    lambda tmp: ["bench", str(_write(tmp / "fake.onnx", b"hello")), "--target", "intel-cpu"],
    lambda tmp: ["inspect", str(archive(tmp / "evil.tar.gz", (member("b/../../evil.txt"), b"abc")))],
], ids=["bench-text-named-onnx", "inspect-tar-with-dotdot"])
def test_real_process_prints_one_line(tmp_path: Path, make) -> None:
    """The same through a real process: nothing a library writes to the stderr file descriptor either."""
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "edgekd", *make(tmp_path)], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert not (tmp_path.parent / "evil.txt").exists()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
