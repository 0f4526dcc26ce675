"""`edgekd eval BUNDLE --images DIR`: top-1 from raw image files equals the run's own figures, torch-free."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgekd.cli.app import _register, app
from tests.mobile_helpers import needs_mobile

_register()
runner = CliRunner()
COLOURS = {"blue": (50, 60, 210), "green": (40, 180, 60), "red": (200, 40, 40)}


def _photos(root: Path, n_train: int = 36, n_test: int = 8, sides: tuple[int, int] = (20, 30)) -> None:
    """Colour-coded noise of mixed sizes (each side in `sides`), JPEG and PNG, one EXIF-rotated file per class."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for c, col in COLOURS.items():
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                h, w = (int(v) for v in rng.integers(*sides, 2))
                img = Image.fromarray(np.clip(rng.normal(col, 60, (h, w, 3)), 0, 255).astype(np.uint8))
                if i == 0:
                    exif = img.getexif()
                    exif[0x0112] = 6
                    img.save(root / split / c / f"{i}.jpg", exif=exif.tobytes())
                else:
                    img.save(root / split / c / (f"{i}.jpg" if i % 2 else f"{i}.png"))


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("openvino")
    import edgekd

    base = tmp_path_factory.mktemp("folder")
    _photos(base / "data")
    edgekd.compress(data=str(base / "data"), student="small_cnn", teacher_epochs=1, finetune_epochs=1, probe_epochs=0,
                    distill_epochs=1, qad_epochs=1, calib_size=40, max_fallback_layers=0, threads=1,
                    run_dir=base / "run", bundle=True)
    return base


def test_eval_reproduces_the_bench_stage_top1_from_raw_files(folder_run):
    result = runner.invoke(app, ["eval", str(folder_run / "run" / "bundle"), "--images",
                                 str(folder_run / "data" / "test"), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["n_images"] == 24 and out["skipped"] == []
    ran = [r for r in out["artifacts"] if r["ran"]]
    assert ran and all(r["top1"] == r["recorded_top1"] for r in ran)  # exactly, per artifact
    report = json.loads((folder_run / "run" / "report.json").read_text())
    bench = {(m["role"], m["precision"]): m["top1"] for m in report["models"]}
    ir = {r["artifact"]: r["top1"] for r in ran if r["format"] == "openvino_ir"}
    assert ir["student_int8_openvino"] == bench[("student_int8", "int8")]
    # the pixels themselves: eval's decode of the raw files is the run's eval set, byte for byte
    from edgekd.data.sources import index_folder
    from edgekd.preprocess import load_image, read_eval_set

    images, labels, pre = read_eval_set(folder_run / "run" / "bundle" / "eval_set.npz")
    index = index_folder(folder_run / "data" / "test")
    np.testing.assert_array_equal(np.stack([load_image(f, pre) for f in index.files]), images)
    assert labels.tolist() == index.labels


def test_the_bundle_carries_a_standalone_reference(folder_run, tmp_path):
    import edgekd.preprocess_reference as ref
    from edgekd.bundle.verify import load_bundle
    from edgekd.preprocess import load_image

    bundle = folder_run / "run" / "bundle"
    assert (bundle / "preprocess.py").read_bytes() == Path(ref.__file__).read_bytes()
    assert "preprocess.py" in [f.path for f in load_bundle(bundle).extra_files]
    photo = next((folder_run / "data" / "test" / "red").glob("0.jpg"))  # the EXIF-rotated one
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(bundle / "preprocess.py", alone)
    subprocess.run([sys.executable, "preprocess.py", str(bundle / "bundle.json"), str(photo), "x.npy"],
                   cwd=alone, check=True, env={"PATH": "/usr/bin:/bin"})  # no PYTHONPATH: no edgekd
    pre = load_bundle(bundle).preprocessing
    from edgekd.preprocess import normalize_np

    np.testing.assert_array_equal(np.load(alone / "x.npy"), normalize_np(load_image(photo, pre)[None], pre))
    card = (bundle / "model_card.md").read_text()
    assert "EXIF orientation" in card and f"shorter side is {pre.resize_shorter} px" in card


def test_eval_imports_no_torch(folder_run):
    code = ("import sys\nfrom edgekd.cli.eval_cmd import run_eval\n"
            f"r = run_eval(__import__('pathlib').Path({str(folder_run / 'run' / 'bundle')!r}), "
            f"__import__('pathlib').Path({str(folder_run / 'data' / 'test')!r}))\n"
            "print(sorted(m for m in ('torch', 'torchvision', 'nncf') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def _one_line_exit_2(result, *needles):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for n in needles:
        assert n in result.output, result.output


def test_unknown_class_folder(folder_run, tmp_path):
    shutil.copytree(folder_run / "data" / "test" / "red", tmp_path / "imgs" / "purple")
    result = runner.invoke(app, ["eval", str(folder_run / "run" / "bundle"), "--images", str(tmp_path / "imgs")])
    _one_line_exit_2(result, "no class 'purple' in the bundle")


def test_altered_bundle_is_refused(folder_run, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(folder_run / "run" / "bundle", copy)
    with open(copy / "preprocess.py", "a") as fh:
        fh.write("# edited\n")
    result = runner.invoke(app, ["eval", str(copy), "--images", str(folder_run / "data" / "test")])
    _one_line_exit_2(result, "preprocess.py", "altered")


def test_array_bundle_takes_arrays_not_files(folder_run, tmp_path):
    """A model trained on arrays (the embedded digits) has no file decode to reproduce."""
    from edgekd.bundle.verify import content_sha256, load_bundle

    copy = tmp_path / "b"
    shutil.copytree(folder_run / "run" / "bundle", copy)
    bundle = load_bundle(copy)
    bundle.preprocessing.source = "array"
    bundle.content_sha256 = content_sha256(bundle)
    (copy / "bundle.json").write_text(bundle.model_dump_json(indent=2))
    result = runner.invoke(app, ["eval", str(copy), "--images", str(folder_run / "data" / "test")])
    _one_line_exit_2(result, "not image", "edgekd bench")


@pytest.mark.mobile
@needs_mobile
def test_eval_runs_the_pte_only_when_asked(folder_run):
    """executorch.runtime imports torch: the default eval leaves the .pte out, saying why; --pte runs it."""
    from edgekd.cli.eval_cmd import PTE_SKIPPED, run_eval

    bundle, images = folder_run / "run" / "bundle", folder_run / "data" / "test"
    rows = {r["artifact"]: r for r in run_eval(bundle, images)["artifacts"]}
    ptes = [n for n, r in rows.items() if r["format"] == "pte"]
    assert ptes and all(not rows[n]["ran"] and rows[n]["why"] == PTE_SKIPPED for n in ptes), rows
    assert any(r["ran"] for r in rows.values() if r["format"] == "tflite"), rows  # LiteRT runs torch-free
    asked = {r["artifact"]: r for r in run_eval(bundle, images, pte=True)["artifacts"]}
    for n in ptes:
        assert asked[n]["ran"] and asked[n]["runtime"] == "executorch" and 0.0 <= asked[n]["top1"] <= 1.0, asked[n]
    r = runner.invoke(app, ["eval", str(bundle), "--images", str(images), "--pte", "--json"])
    assert r.exit_code == 0, r.output
