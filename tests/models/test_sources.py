"""Model sources (edgekd/models/sources.py): import paths, torch.export archives, ONNX teachers, in-memory
modules; each one's bad inputs are one UsageError naming the file and what to do."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from edgekd.errors import UsageError  # noqa: E402
from edgekd.models import sources  # noqa: E402
from edgekd.models.registry import build_model  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "custom_models.py"


def _senet(**kw):
    import importlib.util

    spec = importlib.util.spec_from_file_location("custom_models_t", FIXTURE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, mod.senet(**kw)


def test_file_import_path_builds_adapts_head_and_records_source() -> None:
    src = sources.resolve(f"{FIXTURE}:senet", kwargs={"width": 8})
    assert src.kind == "import" and src.sha256 and src.kwargs == {"width": 8}
    model = build_model(f"{FIXTURE}:senet", num_classes=3, in_channels=3, source_kwargs={"width": 8})
    assert model.decoder[-1].out_features == 3 and model.stem[0].in_channels == 3
    assert model(torch.zeros(2, 3, 8, 8)).shape == (2, 3)
    assert "Python factory (user code)" in src.describe()


def test_module_import_path(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(FIXTURE.parent))
    src = sources.resolve("custom_models:SENet", kwargs={"width": 8, "classes": 4})
    model = sources.build(src, None, 1)
    assert model.decoder[-1].out_features == 4


@pytest.mark.parametrize("spec, kwargs, needle", [
    ("{f}:missing", {}, "has no attribute 'missing'"),
    ("{f}:broken", {}, "the factory raised RuntimeError: weights server unreachable"),
    ("{f}:not_a_module", {}, "returned a str, not a torch.nn.Module"),
    ("{f}:senet", {"depth": 3}, "do not fit the factory"),
    ("no_such_pkg_xyz.models:Net", {}, "cannot find module 'no_such_pkg_xyz.models'"),
    ("/nowhere/model.py:Net", {}, "/nowhere/model.py"),
])
def test_bad_import_paths_are_one_line(spec: str, kwargs: dict, needle: str) -> None:
    with pytest.raises(UsageError) as err:
        build_model(spec.format(f=FIXTURE), num_classes=10, in_channels=1, source_kwargs=kwargs or None)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_dict_output_needs_output_key_then_selects_it() -> None:
    spec = f"{FIXTURE}:DictNet"
    model = build_model(spec, num_classes=10, in_channels=1)
    with pytest.raises(UsageError, match="--teacher-output KEY\\|INDEX"):
        sources.check_logits(model.eval(), torch.zeros(2, 1, 8, 8), spec, "--teacher")
    model = build_model(spec, num_classes=10, in_channels=1, source_output="logits")
    assert sources.check_logits(model.eval(), torch.zeros(2, 1, 8, 8), spec, "--teacher") == 10
    with pytest.raises(UsageError, match="without the key 'scores'"):
        build_model(spec, num_classes=10, in_channels=1, source_output="scores")(torch.zeros(2, 1, 8, 8))


def _export(path: Path, model, batch_dynamic: bool = True) -> Path:
    example = torch.randn(2, 1, 8, 8)
    shapes = ({0: torch.export.Dim("batch")},) if batch_dynamic else None
    torch.export.save(torch.export.export(model.eval(), (example,), dynamic_shapes=shapes), str(path))
    return path


def test_pt2_trains_switches_mode_and_replaces_head(tmp_path: Path) -> None:
    _, net = _senet(width=8)
    path = _export(tmp_path / "senet.pt2", net)
    src = sources.resolve(str(path))
    assert src.kind == "export"
    model = sources.build(src, None, 1)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(x), net.eval()(x), atol=1e-5)  # eval mode: the same function
    model = sources.fit_io(model, 3, 1, "senet.pt2")
    model.train()
    bn = model.get_submodule("body.0.bn1")  # the graph module keeps the original parameter paths
    before = bn.running_mean.clone()
    out = model(x)
    assert out.shape == (4, 3)
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert not torch.equal(before, bn.running_mean)  # BatchNorm in training mode updates its statistics
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # dropout off in eval


def test_pt2_with_fixed_batch_and_damaged_file_are_refused(tmp_path: Path) -> None:
    _, net = _senet(width=8)
    fixed = _export(tmp_path / "fixed.pt2", net, batch_dynamic=False)
    with pytest.raises(UsageError, match="fixed batch size of 2.*Dim\\('batch'\\)"):
        sources.build(sources.resolve(str(fixed)), None, 1)
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"not a zip")
    with pytest.raises(UsageError, match="bad.pt2 is not a loadable torch.export archive \\(not a zip"):
        sources.build(sources.resolve(str(bad)), None, 1)


def _onnx(path: Path, model, dynamic_hw: bool = False) -> Path:
    axes = {"x": {0: "n", 2: "h", 3: "w"}} if dynamic_hw else {"x": {0: "n"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.randn(1, 1, 8, 8),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={**axes, "y": {0: "n"}}, opset_version=17)
    return path


def test_onnx_teacher_gives_the_same_logits_and_checks_classes(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    _, net = _senet(width=8)
    path = _onnx(tmp_path / "t.onnx", net)
    teacher = build_model(str(path), num_classes=10, in_channels=1)
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(teacher(x), net(x), atol=1e-4)
    assert teacher.fixed_size == (8, 8) and not list(teacher.parameters())
    with pytest.raises(UsageError, match="predicts 10 classes and the data has 5"):
        build_model(str(path), num_classes=5, in_channels=1)
    with pytest.raises(UsageError, match="teacher only"):
        sources.resolve(str(path), role="student")


def test_onnx_teacher_with_a_fixed_batch_takes_any_batch(tmp_path: Path) -> None:
    """An ONNX teacher exported with a fixed batch of 4 runs a batch of 10 in chunks of 4; the last, partial
    chunk is padded to 4 and its padding's logits dropped."""
    pytest.importorskip("onnxruntime")
    _, net = _senet(width=8)
    path = tmp_path / "fixed4.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (torch.randn(4, 1, 8, 8),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], opset_version=17)
    teacher = build_model(str(path), num_classes=10, in_channels=1)
    x = torch.randn(10, 1, 8, 8)
    with torch.no_grad():
        out = teacher(x)
        assert out.shape == (10, 10)
        assert torch.allclose(out, net(x), atol=1e-4)


def test_in_memory_module_identity_is_class_and_weights() -> None:
    _, a = _senet(width=8)
    key = sources.register_module(a)
    assert sources.register_module(a) == key
    b = type(a)(8)
    assert sources.register_module(b) != key  # other weights
    with torch.no_grad():
        a.decoder[-1].bias.add_(1.0)
    assert sources.register_module(a) != key  # the registered copy is a snapshot; new weights, new identity
    assert sources.resolve(key).kind == "module"


def test_loading_the_teacher_consumes_no_random_numbers(tmp_path: Path) -> None:
    """Building a model draws its initial weights from the global generator before the checkpoint overwrites
    them; load_frozen_teacher must not, or the student's init would depend on how the teacher is built."""
    from types import SimpleNamespace

    from edgekd.manifest import Manifest
    from edgekd.stages.common import load_frozen_teacher, save_model

    model = build_model("cifar_resnet20", num_classes=10, in_channels=3)
    art = save_model(tmp_path, "model", model, "cifar_resnet20", {"num_classes": 10, "in_channels": 3})
    manifest = Manifest(stage="finetune", id="x", config={}, artifacts=[art])
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    load_frozen_teacher(SimpleNamespace(parent_dirs={"teacher": tmp_path}), {"teacher": manifest}, "cpu")
    assert torch.equal(torch.random.get_rng_state(), state)
