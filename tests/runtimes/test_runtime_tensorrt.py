"""TensorRT: everything that can be checked without a GPU, plus GPU tests that skip without one."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgekd.errors import MissingExtra, UsageError
from edgekd.runtimes import RuntimeSettings, get_runtime
from edgekd.runtimes.tensorrt import (
    compare_fingerprints,
    fingerprint_path,
    onnx_has_qdq,
    plan_build,
    sha256_file,
    trt_fingerprint,
    verify_engine,
)

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
HAS_GPU = shutil.which("nvidia-smi") is not None
ORIN = {"gpu_name": "Orin", "compute_capability": "8.7", "tensorrt_version": "10.3.0"}
H200 = {"gpu_name": "NVIDIA H200", "compute_capability": "9.0", "tensorrt_version": "10.9.0.34"}
INPUTS = {"input": (-1, 3, 224, 224)}


def test_plan_fp16_profile_and_workspace() -> None:
    plan = plan_build(RuntimeSettings(device="GPU", precision="fp16", batch=8, workspace_mb=2048), False, INPUTS)
    assert plan.flags == ("FP16",)
    assert plan.workspace_bytes == 2048 * 2**20
    (p,) = plan.profiles
    assert (p.name, p.min, p.opt, p.max) == ("input", (1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))
    assert plan.default_device == "GPU" and plan.dla_core is None and not plan.explicit_quantization


def test_plan_fp32_has_no_precision_flags() -> None:
    plan = plan_build(RuntimeSettings(precision="fp32", extra={"max_batch": 16}), False, INPUTS)
    assert plan.flags == ()
    assert plan.profiles[0].max == (16, 3, 224, 224)
    assert any("TF32" in n for n in plan.notes)


def test_plan_int8_only_from_qdq() -> None:
    plan = plan_build(RuntimeSettings(precision="int8"), True, INPUTS)
    assert plan.flags == ("INT8", "FP16") and plan.explicit_quantization
    with pytest.raises(UsageError, match="no QuantizeLinear/DequantizeLinear nodes"):
        plan_build(RuntimeSettings(precision="int8"), False, INPUTS)
    with pytest.raises(UsageError, match="quantized.*ask for int8"):
        plan_build(RuntimeSettings(precision="fp16"), True, INPUTS)


def test_plan_tensorrt_11_is_strongly_typed() -> None:
    """TensorRT 11 removed BuilderFlag.INT8/FP16: int8 comes from the Q/DQ graph alone, fp16 needs an fp16 graph."""
    plan = plan_build(RuntimeSettings(precision="int8", extra={"builder_optimization_level": 5}), True, INPUTS, 11)
    assert plan.flags == () and plan.strongly_typed and plan.explicit_quantization and plan.optimization_level == 5
    assert not plan_build(RuntimeSettings(precision="int8"), True, INPUTS, 10).strongly_typed
    with pytest.raises(UsageError, match="strongly typed.*AutoCast"):
        plan_build(RuntimeSettings(precision="fp16"), False, INPUTS, 11)


def test_plan_dla() -> None:
    plan = plan_build(RuntimeSettings(precision="int8", dla_core=1, batch=2), True, INPUTS)
    assert plan.default_device == "DLA" and plan.dla_core == 1
    assert "GPU_FALLBACK" in plan.flags
    p = plan.profiles[0]
    assert p.min == p.opt == p.max == (2, 3, 224, 224)
    with pytest.raises(UsageError, match="DLA runs fp16 or int8"):
        plan_build(RuntimeSettings(precision="fp32", dla_core=0), False, INPUTS)


def test_plan_shape_errors() -> None:
    with pytest.raises(UsageError, match="dynamic dims beyond the batch"):
        plan_build(RuntimeSettings(), False, {"input": (-1, 3, -1, -1)})
    with pytest.raises(UsageError, match="fixed batch of 1 but batch 4"):
        plan_build(RuntimeSettings(batch=4), False, {"input": (1, 3, 32, 32)})
    static = plan_build(RuntimeSettings(batch=1), False, {"input": (1, 3, 32, 32)})
    assert static.profiles[0].min == static.profiles[0].max == (1, 3, 32, 32)
    with pytest.raises(UsageError, match="unknown precision"):
        plan_build(RuntimeSettings(precision="int4"), False, INPUTS)


def test_onnx_has_qdq(conv_onnx: Path, qdq_onnx: Path) -> None:
    assert not onnx_has_qdq(conv_onnx)
    assert onnx_has_qdq(qdq_onnx)


def test_fingerprint_message() -> None:
    assert compare_fingerprints(ORIN, dict(ORIN, cuda_driver_version="12.6")) is None  # driver alone: fine
    assert compare_fingerprints(H200, dict(H200, gpu_name="h200 (nvgpu)")) is None  # same GPU, other spelling
    assert compare_fingerprints(ORIN, H200) == (
        "engine built for Orin (sm_87, TensorRT 10.3) cannot run on H200 (sm_90, TensorRT 10.9): "
        "rebuild it here with `edgekd compile BUNDLE_OR_RUN --target TARGET`"
    )
    # same minor, different patch: show the full versions so the difference is visible
    msg = compare_fingerprints(ORIN, dict(ORIN, tensorrt_version="10.3.1"))
    assert msg is not None and "TensorRT 10.3.0" in msg and "TensorRT 10.3.1" in msg


def test_fingerprint_here_without_tensorrt() -> None:
    fp = trt_fingerprint()
    assert set(fp) >= {"gpu_name", "compute_capability", "tensorrt_version"}
    if not HAS_TRT:
        assert fp["tensorrt_version"] is None


def _fake_engine(tmp_path: Path, env: dict) -> Path:
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"not really an engine")
    record = {"schema": 1, "engine_sha256": sha256_file(engine), "environment": env, "plan": {"precision": "fp16"}}
    fingerprint_path(engine).write_text(json.dumps(record))
    return engine


def test_verify_engine_refusals(tmp_path: Path) -> None:
    engine = _fake_engine(tmp_path, ORIN)
    assert fingerprint_path(engine).name == "model.plan.fingerprint.json"
    digest = sha256_file(engine)
    assert verify_engine(engine, digest, current=ORIN)["environment"] == ORIN
    with pytest.raises(UsageError, match="does not match the manifest"):
        verify_engine(engine, "0" * 64)
    with pytest.raises(UsageError, match=r"built for Orin \(sm_87, TensorRT 10.3\) cannot run on H200"):
        verify_engine(engine, digest, current=H200)
    engine.write_bytes(b"tampered")
    with pytest.raises(UsageError, match="changed after it was built"):
        verify_engine(engine)
    fingerprint_path(engine).unlink()
    with pytest.raises(UsageError, match="no model.plan.fingerprint.json"):
        verify_engine(engine)


@pytest.mark.skipif(HAS_TRT, reason="checks the behaviour when tensorrt is absent")
def test_without_tensorrt(tmp_path: Path, conv_onnx: Path) -> None:
    rt = get_runtime("tensorrt")
    assert rt.available() is False
    assert rt.devices() == []
    with pytest.raises(MissingExtra, match=r"'tensorrt'.*edgekd\[gpu\]"):
        rt.compile(conv_onnx, tmp_path, RuntimeSettings(precision="fp16"))
    engine = _fake_engine(tmp_path, ORIN)
    with pytest.raises(MissingExtra, match="tensorrt"):
        rt.load(engine, RuntimeSettings(), expected_sha256=sha256_file(engine))
    # integrity is checked before anything else, even without tensorrt
    with pytest.raises(UsageError, match="does not match the manifest"):
        rt.load(engine, RuntimeSettings(), expected_sha256="f" * 64)
    with pytest.raises(UsageError, match="does not match the manifest"):
        rt.load(engine, RuntimeSettings(extra={"expected_sha256": "f" * 64}))


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(not (HAS_TRT and HAS_GPU), reason="needs TensorRT and an NVIDIA GPU")
def test_build_load_infer_on_gpu(tmp_path: Path, conv_onnx: Path, batch: np.ndarray) -> None:  # pragma: no cover
    from .conftest import ort_reference

    rt = get_runtime("tensorrt")
    art = rt.compile(conv_onnx, tmp_path, RuntimeSettings(device="GPU", precision="fp32", batch=2))
    assert art.path.is_file() and fingerprint_path(art.path).is_file() and (tmp_path / "timing.cache").is_file()
    sess = rt.load(art.path, RuntimeSettings(batch=2), expected_sha256=art.facts["sha256"])
    np.testing.assert_allclose(sess.infer(batch), ort_reference(conv_onnx, batch), atol=1e-2)
    assert sess.describe()["environment"]["tensorrt_version"]
    # a rebuild reuses the timing cache
    rt.compile(conv_onnx, tmp_path / "again", RuntimeSettings(precision="fp16", batch=2,
                                                           extra={"timing_cache": str(tmp_path / "timing.cache")}))


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(not (HAS_TRT and HAS_GPU), reason="needs TensorRT and an NVIDIA GPU")
def test_int8_engine_from_qdq_on_gpu(tmp_path: Path, qdq_onnx: Path, batch: np.ndarray) -> None:  # pragma: no cover
    from .conftest import ort_reference

    rt = get_runtime("tensorrt")
    art = rt.compile(qdq_onnx, tmp_path, RuntimeSettings(precision="int8", batch=2))
    out = rt.load(art.path, RuntimeSettings(batch=2), expected_sha256=art.facts["sha256"]).infer(batch)
    ref = ort_reference(qdq_onnx, batch)
    assert np.abs(out - ref).max() <= 0.1 * np.abs(ref).max()
