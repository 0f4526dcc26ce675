"""The label of every measurement: on the device, on a host running the profile's own runtime on the same file,
or on a host where another runtime or device type stood in (issue 16's "target" / "host" / substitute)."""

from __future__ import annotations

import pytest

from edgekd.benchmark.placement import measured_on
from edgekd.targets import load_target


@pytest.mark.parametrize("target,runtime,device,expected", [
    ("intel-cpu", "openvino", "CPU", "target"),  # on_target below
    ("intel-cpu", "openvino", "CPU", "host"),  # a CPU that is not the profile's, OpenVINO CPU on the same IR
    ("intel-cpu", "onnxruntime", "CPU", "host substitute"),
    ("jetson", "onnxruntime", "CPU", "host substitute"),  # ORT on a CPU for TensorRT on a GPU
    ("android-arm64", "executorch", "CPU", "host"),  # the phone's .pte through XNNPACK on x86
    ("android-arm64", "onnxruntime", "CPU", "host substitute"),  # the mobile extra missing
    ("ios", "onnxruntime", "CPU", "host substitute"),  # Core ML never runs here
])
def test_measured_on_labels(target, runtime, device, expected):
    on_target = expected == "target"
    assert measured_on(on_target, runtime, device, load_target(target)) == expected


def test_an_openvino_profile_for_another_device_type_is_a_substitute_on_cpu():
    t = load_target("intel-cpu")
    gpu = t.model_copy(update={"runtime": t.runtime.model_copy(update={"device": "GPU"})})
    assert measured_on(False, "openvino", "CPU", gpu) == "host substitute"
