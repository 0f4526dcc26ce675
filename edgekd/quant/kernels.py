"""NNCF's fake-quantization kernels in plain PyTorch: no just-in-time C++ extension, no compiler, no lock.

NNCF 3.4 runs every quantizer's eager forward and backward through
``nncf.torch.quantization.extensions.QuantizedFunctionsCPU`` (``...CUDA`` on GPUs): on first use it compiles a
C++ extension into the torch extensions cache (``~/.cache/torch_extensions``, shared by every environment with
the same torch version) under a lock and a 60 s limit (``NNCF_EXTENSION_LOAD_TIMEOUT``). On a loaded machine
the build outlived the limit and the qad stage died with ``ExtensionLoaderTimeoutException`` (issue 12); the
CUDA one needs nvcc besides.

What edgekd uses needs none of it. ONNX and OpenVINO export trace the quantizers into torch's own
``fake_quantize_*`` ops and ``nncf.strip`` writes native torch modules; only eager fake-quant forward and
backward (the calibration check, QAD training, accuracy and parity evaluation) call the kernels. And the CPU
extension holds no hand-written loop: ``functions_cpu.cpp`` is a dozen ATen tensor calls. :class:`TorchQuantizeKernels`
makes the same calls in the same order from Python, so its results are bit-identical to the extension's
(tests/quant/test_kernels.py) and its speed is the same (the tensor work runs in the same ATen kernels; the
Python dispatch adds microseconds per call; measured in bench/bench_nncf_extension.py, bench/RESULTS.md).
NNCF's own fallback (``reference.ReferenceQuantize``) is not used: it is wrapped in ``torch.compile``
(inductor compiles C++ on CPU: the same failure in another place), and eager it computes the scale another
way (results differ by one quantum at rounding ties) with more tensor operations.

edgekd installs these kernels into NNCF's kernel namespaces (:func:`use_torch_kernels`, called whenever edgekd
uses NNCF), so the extension is never built or loaded. The namespace attribute it sets is NNCF-internal; if
a future NNCF moves it, :func:`namespaces` says so in one line (exit 2) instead of compiling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgekd.compat import check_tested
from edgekd.errors import StageFailed, require

check_tested("nncf")  # install() sets NNCF's private _loaded_namespace

if TYPE_CHECKING:  # pragma: no cover
    import torch

_installed = False


def _sum_like(tensor: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """NNCF's C++ ``sum_like``: sum over every dimension where ``ref`` has size 1 (autograd sums the rest)."""
    if tensor.numel() == 1:
        return tensor.sum().view_as(ref)
    for dim in range(ref.dim()):
        if ref.size(dim) == 1:
            tensor = tensor.sum(dim, keepdim=True)
    return tensor


class TorchQuantizeKernels:
    """NNCF's ``functions_cpu.cpp`` in Python, op for op (the same ATen calls in the same order).

    Same call signatures as the extension; the CUDA call passes no ``is_asymmetric``, so it defaults to
    computing the ``input_low`` gradient (a symmetric quantizer discards it).
    """

    @staticmethod
    def Quantize_forward(input_: torch.Tensor, input_low: torch.Tensor, input_range: torch.Tensor,
                         levels: int) -> torch.Tensor:
        import torch

        # a true division, as ATen's scalar / tensor in C++ (Python's 255 / t is t.reciprocal() * 255, 1 ulp off)
        s = input_range.new_tensor(float(levels - 1)).div(input_range)
        output = torch.max(torch.min(input_, input_low + input_range), input_low)
        zero_point = (-input_low * s).round_()
        output -= input_low
        output *= s
        output -= zero_point
        output = output.round_()
        return output.div_(s)

    @staticmethod
    def Quantize_backward(grad_output: torch.Tensor, input_: torch.Tensor, input_low: torch.Tensor,
                          input_range: torch.Tensor, levels: int, level_low: int, level_high: int,
                          is_asymmetric: bool = True) -> list[torch.Tensor]:
        import torch

        output = TorchQuantizeKernels.Quantize_forward(input_, input_low, input_range, levels)
        reverted_range = input_range.new_tensor(1.0).div(input_range)
        alpha = level_low / level_high
        mask_hi = input_.gt(input_low + input_range)
        mask_lo = input_.lt(input_low)
        err = torch.sub(output, input_)
        err.mul_(reverted_range)
        err.masked_fill_(mask_hi, 1)
        err.masked_fill_(mask_lo, alpha)
        err.mul_(grad_output)
        grad_input_range = _sum_like(err, input_range)
        outside = mask_hi.logical_or_(mask_lo)
        grad_input = grad_output.clone().masked_fill_(outside, 0)
        if is_asymmetric:
            grad_input_low = _sum_like(grad_output.clone().masked_fill_(outside.logical_not(), 0), input_low)
        else:
            grad_input_low = torch.zeros_like(input_low)
        return [grad_input, grad_input_low, grad_input_range]


def torch_kernels() -> type:
    """The kernel namespace edgekd installs into NNCF: :class:`TorchQuantizeKernels`."""
    return TorchQuantizeKernels


def namespaces() -> list[Any]:
    """NNCF's lazily loaded kernel namespaces (CPU, and CUDA when torch sees a GPU)."""
    require("nncf", "train", "INT8 quantization uses NNCF")
    from nncf.torch.extensions import ExtensionNamespace
    from nncf.torch.quantization import extensions

    found = [ns for ns in (extensions.QuantizedFunctionsCPU, extensions.QuantizedFunctionsCUDA)
             if isinstance(ns, ExtensionNamespace)]
    if not found or not all(hasattr(ns, "_loaded_namespace") for ns in found):
        import nncf

        raise StageFailed(
            f"NNCF {nncf.__version__} no longer exposes the kernel namespace edgekd replaces "
            "(nncf.torch.quantization.extensions.QuantizedFunctionsCPU._loaded_namespace): "
            "install the NNCF release edgekd is tested with: pip install 'nncf==3.4.*'"
        )
    return found


def install(kernels: Any) -> None:
    """Make NNCF's quantizers call ``kernels`` (a namespace like :func:`torch_kernels`'s) from now on."""
    for ns in namespaces():
        ns._loaded_namespace = kernels


def use_torch_kernels() -> None:
    """Install the eager reference kernels once per process; NNCF then never builds its extension."""
    global _installed
    if not _installed:
        install(torch_kernels())
        _installed = True
