"""The PT2E INT8 route (edgekd.quant.pt2e) and the mobile writers' converters (edgekd.bundle.mobile), on a tiny
residual net: every INT8 artifact is run (ExecuTorch, LiteRT) and compared with the PyTorch quantized reference;
the integer checks fail, naming the ops, on a model that is not integer. Skips without the mobile extra."""

from __future__ import annotations

import numpy as np
import pytest

from tests.mobile_helpers import needs_mobile, tiny_resnet

pytestmark = [pytest.mark.mobile, needs_mobile]


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """(float model, example, program path, reference GraphModule) of the XNNPACK route, PTQ on seeded data."""
    import torch

    from edgekd.quant import pt2e

    model = tiny_resnet()
    gen = torch.Generator().manual_seed(1)
    calib = [torch.randn(16, 3, 12, 12, generator=gen) for _ in range(4)]
    example = torch.zeros(2, 3, 12, 12)
    q = pt2e.ptq(model, example, calib, "pt2e-xnnpack")
    path = pt2e.save_program(q, tmp_path_factory.mktemp("pt2e") / "pt2e-xnnpack.pt2", example)
    return model, example, path, pt2e.allow_train_eval(pt2e.load_program(path))


def _inputs(n=24):
    return np.random.default_rng(3).standard_normal((n, 3, 12, 12)).astype(np.float32)


def _agree(ref, out):
    from edgekd.bundle.verify import compare

    result = compare(ref, out, "int8")
    assert result["ok"], result
    return result


def test_program_is_quantized_and_reloads(quantized):
    import torch

    from edgekd.quant import pt2e

    model, _, path, ref = quantized
    ops = pt2e.quantized_ops(ref)
    assert ops.get("quantize_per_tensor", 0) >= 3 and ops.get("dequantize_per_channel", 0) == 3  # 2 convs + linear
    x = torch.from_numpy(_inputs())
    with torch.no_grad():
        reloaded = pt2e.load_program(path)(x)
        assert torch.equal(reloaded, ref(x))
        # close to the float model, but not equal to it: the program really rounds to int8
        diff = (reloaded - model(x)).abs().max().item()
    assert 0 < diff < 0.5


def test_qat_starts_from_the_ptq_ranges():
    """QAD's fake quantizers start (and stay) at the PTQ calibration's activation ranges: converted before any
    training, the QAT model equals the PTQ model; torchao's moving-average ranges give another model."""
    import torch

    from edgekd.quant import pt2e

    model, example = tiny_resnet(), torch.zeros(2, 3, 12, 12)
    gen = torch.Generator().manual_seed(2)
    calib = [torch.randn(16, 3, 12, 12, generator=gen) for _ in range(3)]
    x = torch.from_numpy(_inputs())
    with torch.no_grad():
        ptq = pt2e.ptq(model, example, calib, "pt2e-xnnpack")(x)
        seeded = pt2e.convert_qat(pt2e.prepare_qat(model, example, calib, "pt2e-xnnpack"))(x)
        moving = pt2e.convert_qat(pt2e.prepare_qat(model, example, calib, "pt2e-xnnpack", ranges="moving-average"))(x)
    assert torch.equal(seeded, ptq)
    assert not torch.equal(moving, ptq)


def _infer(runtime: str, path, x):
    """The file run by its runtime class, as the bundle verifier and bench run it (one image at a time)."""
    from edgekd.runtimes import get_runtime
    from edgekd.runtimes.base import RuntimeSettings

    return get_runtime(runtime).load(path, RuntimeSettings(device="CPU", precision="int8", threads=None)).infer(x)


def test_int8_pte_runs_in_executorch_and_agrees(quantized, tmp_path):
    import torch

    from edgekd.bundle.mobile import lower_pte, pte_integer_report
    from edgekd.quant import pt2e

    _, _, path, ref = quantized
    facts = lower_pte(pt2e.fold_weight_quantize(pt2e.load_program(path)), torch.zeros(1, 3, 12, 12),
                      tmp_path / "m.pte")
    assert pte_integer_report(facts)["ok"], facts
    x = _inputs()
    out = _infer("executorch", tmp_path / "m.pte", x)
    with torch.no_grad():
        _agree(ref(torch.from_numpy(x)).numpy(), out)


def test_int8_tflite_is_fully_integer_runs_and_agrees(quantized, tmp_path):
    import torch

    from edgekd.bundle.mobile import convert_tflite, tflite_integer_report
    from edgekd.quant import pt2e

    _, _, path, ref = quantized
    facts = convert_tflite(pt2e.load_program(path), torch.zeros(1, 3, 12, 12), tmp_path / "m.tflite", "pt2e-xnnpack")
    assert facts["io"]["input"]["dtype"] == "int8" and "scale" in facts["io"]["input"]
    report = tflite_integer_report(tmp_path / "m.tflite")
    assert report["ok"] and report["ops"].get("ADD") == 1, report  # the residual add stays an int8 ADD
    x = _inputs()
    out = _infer("litert", tmp_path / "m.tflite", x)
    with torch.no_grad():
        _agree(ref(torch.from_numpy(x)).numpy(), out)
    # the float-I/O variant (--tflite-io float): same integer body, a QUANTIZE/DEQUANTIZE at the ends
    facts = convert_tflite(pt2e.load_program(path), torch.zeros(1, 3, 12, 12), tmp_path / "f.tflite", "pt2e-xnnpack",
                           io="float")
    assert facts["io"]["input"]["dtype"] == "float32" and facts["io_requested"] == "float"
    report = tflite_integer_report(tmp_path / "f.tflite")
    assert report["ok"] and report["ops"]["QUANTIZE"] >= 1 and report["ops"]["DEQUANTIZE"] == 1, report
    np.testing.assert_array_equal(_infer("litert", tmp_path / "f.tflite", x), out)


def test_integer_check_names_the_float_ops_of_a_float_tflite(tmp_path):
    import torch

    from edgekd.bundle.mobile import convert_tflite, tflite_integer_report

    convert_tflite(tiny_resnet(), torch.zeros(1, 3, 12, 12), tmp_path / "f.tflite", None)
    report = tflite_integer_report(tmp_path / "f.tflite")
    assert not report["ok"]
    assert {"CONV_2D", "ADD", "FULLY_CONNECTED"} <= set(report["float_ops"]), report
    assert "ADD x1" in report["float_ops_text"]


def test_litert_quantizer_leaves_float_ops_and_the_check_names_them(tmp_path):
    """litert-torch 0.10's own PT2EQuantizer on a residual net: its .tflite keeps the residual ADD and the
    pooling MEAN in float between DEQUANTIZE/QUANTIZE (why the bundle lowers the XNNPACK-quantized program)."""
    import torch

    from edgekd.bundle.mobile import convert_tflite, tflite_integer_report
    from edgekd.quant import pt2e

    example = torch.zeros(2, 3, 12, 12)
    q = pt2e.ptq(tiny_resnet(), example, [torch.randn(8, 3, 12, 12)], "pt2e-litert")
    convert_tflite(q, example[:1], tmp_path / "l.tflite", "pt2e-litert")
    report = tflite_integer_report(tmp_path / "l.tflite")
    assert not report["ok"] and report["float_ops"].get("ADD") == 1, report
    assert "ADD x1" in report["float_ops_text"]


def test_pte_integer_check_names_compute_left_outside_the_delegate(tmp_path):
    import torch

    from edgekd.bundle.mobile import lower_pte, pte_integer_report
    from edgekd.quant import pt2e

    example = torch.zeros(2, 3, 12, 12)
    q = pt2e.ptq(tiny_resnet(head_mean=True), example, [torch.randn(8, 3, 12, 12)], "pt2e-xnnpack")
    facts = lower_pte(pt2e.fold_weight_quantize(q), example[:1], tmp_path / "m.pte")
    report = pte_integer_report(facts)
    assert not report["ok"] and report["compute_ops_outside_delegate"] == {"aten.mean.dim": 1}, report
    assert pte_integer_report({"outside_delegate": {"aten.slice_copy.Tensor": 4}})["ok"]  # data movement only


def test_coreml_int8_spec_has_int8_weights_and_activations(quantized, tmp_path):
    import torch

    from edgekd.bundle.mobile import convert_coreml, coreml_spec_report
    from edgekd.quant import pt2e

    _, _, path, _ = quantized
    convert_coreml(pt2e.fold_weight_quantize(pt2e.load_program(path)), torch.zeros(1, 3, 12, 12),
                   tmp_path / "q.mlpackage", int8=True)
    spec = coreml_spec_report(tmp_path / "q.mlpackage", "int8", [1, 3, 12, 12])
    assert spec["spec_ok"], spec
    assert spec["ops"]["constexpr_affine_dequantize"] == 3 and spec["ops"]["quantize"] >= 3
    assert spec["status"] == "converted, not run (needs macOS)"
    # the float package, judged as INT8, is refused with the reason
    convert_coreml(tiny_resnet(), torch.zeros(1, 3, 12, 12), tmp_path / "f.mlpackage", int8=False)
    fp = coreml_spec_report(tmp_path / "f.mlpackage", "int8", [1, 3, 12, 12])
    assert not fp["spec_ok"] and any("int8 weights" in p for p in fp["problems"])


def test_capture_error_is_one_line_usage_error():
    import torch

    from edgekd.quant import pt2e

    class DataDependent(torch.nn.Module):
        def forward(self, x):
            return x * 2 if x.mean() > 0 else x

    with pytest.raises(pt2e.CaptureError) as info:
        pt2e.capture(DataDependent(), torch.zeros(2, 3, 4, 4))
    text = str(info.value)
    assert text.startswith("torch.export cannot capture the student:") and "\n" not in text
    assert "data-dependent" in text


def test_coreml_unsupported_op_fails_that_artifact_only(tmp_path):
    import torch

    from edgekd.bundle.mobile import _attempt, convert_coreml

    class Erfinv(torch.nn.Module):
        def forward(self, x):
            return torch.special.erfinv(torch.tanh(x)).mean((2, 3))

    planned = _attempt("mlpackage", "student_fp32_mlpackage", "student_fp32", "fp32", ["coreml"],
                       tmp_path / "e.mlpackage",
                       lambda: convert_coreml(Erfinv().eval(), torch.zeros(1, 3, 4, 4), tmp_path / "e.mlpackage",
                                              int8=False), {})
    assert planned.files == [] and "special_erfinv" in planned.error


def test_unknown_route_and_litert_quantizer():
    from edgekd.errors import UsageError
    from edgekd.quant import pt2e

    with pytest.raises(UsageError, match="unknown PT2E route 'pt2e-foo'"):
        pt2e.route("pt2e-foo")
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer

    assert isinstance(pt2e.make_quantizer("pt2e-litert", qat=True), PT2EQuantizer)
