"""Bad model sources (issue 22) on the command line: each is one line naming the file and what to do, exit 2,
and the run directory it names stays byte-for-byte as it was (a fake finished run, no training)."""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekd.cli.app import _register, app

sys.path.insert(0, str(Path(__file__).parent))
from test_bad_inputs import tree_state  # noqa: E402
from test_bench_cmd import build_run  # noqa: E402

torch = pytest.importorskip("torch")
_register()
runner = CliRunner()
MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "custom_models.py"


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory) -> Path:
    return build_run(tmp_path_factory.mktemp("srcrun") / "run")


def _onnx(path: Path, classes: int = 10, dynamic_hw: bool = False) -> Path:
    sys.path.insert(0, str(MODELS.parent))
    from custom_models import senet

    axes = {"x": {0: "n", 2: "h", 3: "w"}} if dynamic_hw else {"x": {0: "n"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(senet(8, 1, classes, 1).eval(), (torch.randn(1, 1, 8, 8),), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={**axes, "y": {0: "n"}},
                          opset_version=17)
    return path


def _pt2_fixed(path: Path) -> Path:
    sys.path.insert(0, str(MODELS.parent))
    from custom_models import senet

    torch.export.save(torch.export.export(senet(8, 1).eval(), (torch.randn(1, 1, 8, 8),)), str(path))
    return path


CASES = {
    "pt2-damaged": (lambda t: ["--teacher", str(_write(t / "m.pt2", b"PK\x03\x04junk"))],
                    ("m.pt2", "not a loadable torch.export archive")),
    "pt2-fixed-batch": (lambda t: ["--teacher", str(_pt2_fixed(t / "f.pt2"))], ("fixed batch size of 1",)),
    "import-missing-module": (lambda t: ["--teacher", "nosuchpkg_q.nets:Net"], ("cannot find module",)),
    "import-missing-attribute": (lambda t: ["--teacher", f"{MODELS}:NoSuch"], ("has no attribute 'NoSuch'",)),
    "import-factory-raises": (lambda t: ["--teacher", f"{MODELS}:broken"], ("the factory raised RuntimeError",)),
    "import-not-a-module": (lambda t: ["--teacher", f"{MODELS}:not_a_module"], ("not a torch.nn.Module",)),
    "import-bad-kwargs": (lambda t: ["--teacher", f"{MODELS}:senet", "--teacher-kwargs", "{depth: 3}"],
                          ("do not fit the factory",)),
    "import-kwargs-not-mapping": (lambda t: ["--teacher", f"{MODELS}:senet", "--teacher-kwargs", "[1, 2]"],
                                  ("teacher_kwargs", "mapping")),
    "kwargs-on-registry-model": (lambda t: ["--teacher", "cifar_resnet20", "--teacher-kwargs", "{a: 1}"],
                                 ("import path",)),
    "dict-output-without-key": (lambda t: ["--teacher", f"{MODELS}:DictNet"], ("returns a dict", "--teacher-output")),
    "onnx-class-mismatch": (lambda t: ["--teacher", str(_onnx(t / "c5.onnx", classes=5))],
                            ("predicts 5 classes and the data has 10",)),
    "onnx-dynamic-size": (lambda t: ["--teacher", str(_onnx(t / "dyn.onnx", dynamic_hw=True))],
                          ("dynamic height and width", "--input-size")),
    "onnx-as-student": (lambda t: ["--student", str(_onnx(t / "s.onnx"))], ("teacher only",)),
    "onnx-with-hint": (lambda t: ["--teacher", str(_onnx(t / "h.onnx")), "--student", "small_cnn", "--hint",
                                  "features.0:stem.0"], ("ONNX teacher gives logits only",)),
    "onnx-class-names-differ": (lambda t: ["--teacher", str(_onnx(t / "n.onnx")), "--teacher-classes",
                                           str(_write(t / "names.txt", b"\n".join(b"x%d" % i for i in range(10))))],
                                ("does not match the data's classes",)),
    "mean-wrong-length": (lambda t: ["--teacher", f"{MODELS}:senet", "--mean", "0.1", "--mean", "0.2"],
                          ("--mean has 2 values", "1 channels")),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_model_source(case: str, fake_run: Path, tmp_path: Path) -> None:
    make, needles = CASES[case]
    run = tmp_path / "run"
    shutil.copytree(fake_run, run)
    before = tree_state(run)
    result = runner.invoke(app, ["compress", *make(tmp_path), "--run-dir", str(run), "-q"])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert tree_state(run) == before
