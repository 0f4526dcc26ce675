"""Stage 5, export: ONNX for every model, INT8 as QDQ ONNX (int8 weights) and OpenVINO IR, each checked on
real inputs.

Parity (tolerances in edgekd/export/parity.py) is measured on held-out images at batch 1 and at a batch
larger than the one traced, and recorded per artifact; a failure or NaN/Inf stops the stage.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edgekd.data.batches import normalize_np
from edgekd.errors import MissingExtra
from edgekd.export.onnx_export import adopt_onnx, export_onnx
from edgekd.export.parity import check_parity, check_parity_with
from edgekd.manifest import ArtifactKind, Manifest, make_artifact
from edgekd.quant.nncf_quant import export_openvino_ir, export_qdq_onnx, load_quantized
from edgekd.runtimes.host import has_module
from edgekd.stages.common import example_input, load_model, student_data

NAME = "export"
READS_DATA = True
DISTRIBUTED = False

INPUT, OUTPUT = "input", "logits"


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    opset: int = Field(default=17, ge=17)
    parity_samples: int = Field(default=256, ge=8)
    openvino_ir: bool = True  # also write the INT8 OpenVINO IR when openvino is installed
    # how the QDQ ONNX stores weights: int8 behind DequantizeLinear (edgekd.export.qdq_weights). Part of the
    # stage id, so a run exported before the fold (float32 weights -> QuantizeLinear) exports again on reuse
    int8_weights: Literal["int8"] = "int8"


def _io(pre) -> dict:
    """The ONNX input/output facts of a model taking `pre`'s input (each model its own size)."""
    return {"input_name": INPUT, "output_name": OUTPUT, "input_shape": ["batch", pre.channels, *pre.input_size],
            "layout": "NCHW", "dtype": "float32"}


def run(cfg: Config, parents: dict[str, Manifest], ctx) -> Manifest:
    # the teacher runs at the data's size; the student at its own (a smaller input: edgekd.search.resolution),
    # on the same test images decoded straight at its size
    tdata, sdata = ctx.data, student_data(ctx, parents["student"])
    tpre, pre = tdata.preprocessing, sdata.preprocessing
    work = ctx.work_dir
    example = example_input(pre)
    # parity is a check, not a selection: inputs only (no labels) from the test split, which is the largest
    # held-out split and the one the bundle's eval set and the bench stage run the same artifacts on
    inputs = normalize_np(sdata.test.images[: cfg.parity_samples], pre)
    t_inputs = inputs if tdata is sdata else normalize_np(tdata.test.images[: cfg.parity_samples], tpre)
    sizes = (1, min(len(inputs), 64))
    teacher, _ = load_model(ctx.parent_dirs["teacher"], parents["teacher"])
    student, meta = load_model(ctx.parent_dirs["student"], parents["student"])
    qart = parents["quantized"].artifact("quantized")
    qmodel = load_quantized(student, ctx.parent_dirs["quantized"] / qart.path, example)
    io = _io(pre)
    artifacts, parity, notes = [], {}, []
    for name, model, m_pre, m_inputs in (("teacher_fp32", teacher, tpre, t_inputs),
                                         ("student_fp32", student, pre, inputs)):
        path = work / f"{name}.onnx"
        if getattr(model, "edgekd_onnx", False):  # the user's ONNX teacher is the file itself
            facts = adopt_onnx(model.path, path, input_name=INPUT, output_name=OUTPUT)
            notes.append(f"teacher_fp32.onnx is the given ONNX teacher ({model.path.name}), renamed to "
                         f"{INPUT}/{OUTPUT}; not re-exported")
        else:
            facts = export_onnx(model, path, example_input(m_pre), opset=cfg.opset, input_name=INPUT,
                                output_name=OUTPUT)
        fixed = not facts.get("dynamic_batch", True)
        report = check_parity(path, model, m_inputs, "fp32", batch_sizes=(1,) if fixed else sizes)
        parity[name] = report.model_dump(mode="json")
        artifacts.append(make_artifact(work, name, ArtifactKind.onnx, path, precision="fp32", opset=cfg.opset,
                                       nodes=facts.get("nodes"), parity=report.summary(), **_io(m_pre)))
    path = work / "student_int8_qdq.onnx"
    facts = export_qdq_onnx(qmodel, path, example, opset=cfg.opset, input_name=INPUT, output_name=OUTPUT)
    report = check_parity(path, qmodel, inputs, "int8", batch_sizes=sizes)
    parity["student_int8_qdq"] = report.model_dump(mode="json")
    artifacts.append(make_artifact(work, "student_int8_qdq", ArtifactKind.onnx, path, precision="int8",
                                   opset=cfg.opset, quantize_linear=facts.get("quantize_linear"),
                                   dequantize_linear=facts.get("dequantize_linear"),
                                   int8_weights=facts.get("int8_weights"),
                                   float_ops=facts.get("float_ops"), parity=report.summary(), **io))
    if facts.get("float_nodes"):
        notes.append(f"INT8 QDQ ONNX keeps {len(facts['float_nodes'])} weighted node(s) in float: "
                     f"{', '.join(facts['float_nodes'][:5])}.")
    if cfg.openvino_ir and has_module("openvino"):
        xml = work / "student_int8.xml"
        ov_facts = export_openvino_ir(qmodel, xml, example)
        from edgekd.runtimes import get_runtime
        from edgekd.runtimes.base import RuntimeSettings

        session = get_runtime("openvino").load(xml, RuntimeSettings(device="CPU", precision="int8"))
        report = check_parity_with(session.infer, qmodel, inputs, "int8", batch_sizes=sizes,
                                   artifact=xml.name)
        parity["student_int8_openvino"] = report.model_dump(mode="json")
        artifacts.append(make_artifact(work, "student_int8_openvino", ArtifactKind.openvino_ir, xml,
                                       precision="int8", fake_quantize=ov_facts.get("fake_quantize"),
                                       companion=xml.with_suffix(".bin").name, parity=report.summary(), **io))
        artifacts.append(make_artifact(work, "student_int8_openvino_bin", ArtifactKind.other, xml.with_suffix(".bin")))
    elif cfg.openvino_ir:
        notes.append(f"OpenVINO IR not written: {MissingExtra('openvino', 'cpu')}.")
    if tdata is not sdata:
        notes.append(f"The student takes {pre.input_size[0]}x{pre.input_size[1]} inputs, the teacher the data's "
                     f"{tpre.input_size[0]}x{tpre.input_size[1]}: each model was exported and checked at its own size "
                     "on the same test images.")
    metrics = {"parity": parity, "student_arch": meta["arch"], "opset": cfg.opset,
               "student_input_size": list(pre.input_size), "teacher_input_size": list(tpre.input_size),
               "parity_inputs": f"{len(inputs)} test images (inputs only) at batch sizes {sizes}"}
    return Manifest(stage=NAME, id="", config={}, artifacts=artifacts, preprocessing=pre, metrics=metrics, notes=notes)
