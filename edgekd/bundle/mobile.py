"""Mobile formats of a bundle (the `mobile` extra): ExecuTorch .pte (XNNPACK), LiteRT .tflite, Core ML .mlpackage.

FP32: the distilled student's checkpoint, captured with torch.export and lowered. INT8: the PT2E program the
qad_pt2e stage kept (`<route>.pt2`, edgekd.quant.pt2e): one quantized model lowered by each converter, so every
mobile artifact is compared with the same PyTorch quantized reference.
- .pte: torch.export (batch 1) -> to_edge_transform_and_lower(XnnpackPartitioner) -> to_executorch. The ops
  left outside the XNNPACK delegate are recorded (the ResNet shortcut's strided slice runs in ExecuTorch's
  portable kernels); a compute op left outside fails the integer check.
- .tflite: litert_torch.convert, INT8 with QuantConfig(PT2EQuantizer) (litert-torch's STATIC Q/DQ lowering,
  which gives a fully-integer model with int8 input and output; their scale and zero point are recorded).
- .mlpackage: coremltools ML program (iOS 17), INT8 from the same Q/DQ program (weights become
  constexpr_affine_dequantize, activations quantize/dequantize). Core ML runs only on Apple OSes: checked as a
  spec here, never counted as verified.
A model a converter cannot hold fails that artifact alone (Planned.error), never the bundle.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any, Callable

from edgekd.bundle.run_info import RunView
from edgekd.compat import check_tested
from edgekd.errors import UsageError

check_tested("ai-edge-litert")  # tflite_integer_report reads the interpreter's private _get_ops_details

PT2E_STAGE = "qad_pt2e"
# ops that only move or reshape data: allowed outside the XNNPACK delegate of an INT8 .pte
_DATA_MOVEMENT = ("slice", "view", "permute", "cat", "pad", "getitem", "clone", "expand", "squeeze", "unsqueeze",
                  "reshape", "select", "alias", "transpose")


def _ops_text(ops: dict[str, int]) -> str:
    return ", ".join(f"{k} x{v}" for k, v in ops.items())


def _planned():  # late import: formats imports this module
    from edgekd.bundle.formats import Planned

    return Planned


def fail_text(exc: BaseException) -> str:
    from edgekd.bundle.formats import unsupported_operator

    op = unsupported_operator(exc)
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return f"operator {op} is not supported by the converter ({first})" if op else first


def _attempt(fmt: str, name: str, role: str, precision: str, runtimes: list[str], dst: Path,
             build: Callable[[], dict[str, Any]], facts: dict[str, Any]):
    """Run one converter; its failure (capture or conversion) becomes a failed artifact, not a crash."""
    from edgekd.quant.pt2e import CaptureError

    Planned = _planned()
    try:
        facts = {**facts, **build()}
    except (CaptureError, UsageError) as exc:
        return Planned(name, role, fmt, precision, runtimes, [], facts, error=str(exc))
    except Exception as exc:  # converters raise many types; the artifact is marked failed with the reason
        return Planned(name, role, fmt, precision, runtimes, [], facts, error=f"{fmt}: {fail_text(exc)}")
    return Planned(name, role, fmt, precision, runtimes, [dst], facts)


def _student(run: RunView) -> tuple[Any, Any]:
    import torch

    from edgekd.models.checkpoint import load_edgekd_checkpoint

    model, _ = load_edgekd_checkpoint(run.path("distill", "model"))
    pre = run.manifest("distill").preprocessing
    return model.eval(), torch.zeros(1, pre.channels, *pre.input_size)


def int8_route(run: RunView, fmt: str) -> str | None:
    """The PT2E program an INT8 artifact of `fmt` is lowered from: LiteRT prefers its own quantizer's
    program, ExecuTorch and Core ML the XNNPACK one; else whichever the run has."""
    if not run.has(PT2E_STAGE):
        return None
    return pick_route([a.name for a in run.manifest(PT2E_STAGE).artifacts], fmt)


def pick_route(have: list[str], fmt: str) -> str | None:
    """Of the PT2E programs `have`, the one an INT8 `fmt` file is lowered from (see int8_route)."""
    order = ["pt2e-litert", "pt2e-xnnpack"] if fmt == "tflite" else ["pt2e-xnnpack", "pt2e-litert"]
    return next((r for r in order if r in have), None)


def _program(run: RunView, route: str, fold: bool) -> Any:
    from edgekd.quant import pt2e

    gm = pt2e.load_program(run.path(PT2E_STAGE, route))
    return pt2e.fold_weight_quantize(gm) if fold else gm


def _no_int8(run: RunView, fmt: str, name: str, runtimes: list[str]):
    why = (f"{name}: not built: this run has no PT2E INT8 program (stage {PT2E_STAGE}); a target whose profile lists "
           "a PT2E quantizer (e.g. --target android-arm64) or compress with the mobile extra installed builds it")
    return _planned()(name, "student_int8", fmt, "int8", runtimes, [], {}, error=why)


def _export(model: Any, example: Any) -> Any:
    import torch

    from edgekd.quant.pt2e import CaptureError, capture_error_text

    try:
        return torch.export.export(model, (example,))
    except Exception as exc:
        raise CaptureError(f"torch.export cannot capture the student: {capture_error_text(exc)}") from None


# -------------------------------------------------------------------------------------------- ExecuTorch
def lower_pte(model: Any, example: Any, dst: Path) -> dict[str, Any]:
    """torch.export (static batch 1) -> XNNPACK delegate -> .pte; the ops left outside the delegate."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    edge = to_edge_transform_and_lower(_export(model, example), partitioner=[XnnpackPartitioner()])
    outside: Counter[str] = Counter()
    for node in edge.exported_program().graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        target = getattr(node.target, "__name__", None) or str(node.target)
        if "call_delegate" in target or target == "getitem":
            continue
        edge_op = re.match(r"<EdgeOpOverload: ([\w.]+)>", str(node.target))
        outside[edge_op.group(1) if edge_op else target] += 1
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(edge.to_executorch().buffer)
    return {"backend": "XNNPACK", "static_shape": list(example.shape), "outside_delegate": dict(outside)}


def pte_integer_report(facts: dict[str, Any]) -> dict[str, Any]:
    """An INT8 .pte is integer where it computes: every compute op inside the XNNPACK delegate."""
    outside = facts.get("outside_delegate") or {}
    compute = {op: n for op, n in outside.items() if not any(k in op for k in _DATA_MOVEMENT)}
    moved = {op: n for op, n in outside.items() if op not in compute}
    summary = (f"not integer: compute outside the XNNPACK delegate: {_ops_text(compute)}" if compute else
               "all compute in the XNNPACK delegate" + (f" (data movement outside: {_ops_text(moved)})" if moved else ""))
    return {"ok": not compute, "summary": summary, "compute_ops_outside_delegate": compute,
            "data_movement_outside_delegate": moved,
            "rule": "every compute op (conv, linear, add, ...) runs in the XNNPACK delegate's int8 kernels; only "
                    "data movement may run in ExecuTorch's portable kernels"}


def compiled_file(run: RunView, role: str, fmt: str) -> tuple[Path, dict[str, Any]] | None:
    """The run's compile stage's `fmt` file of `role` (a mobile target's compile writes the .pte its bench
    measured, edgekd.export.mobile), or None."""
    if not run.has("compile") or not run.manifest("compile").has(role):
        return None
    art = run.manifest("compile").artifact(role)
    return (run.dirs["compile"] / art.path, art.facts) if art.kind.value == fmt else None


def _reuse(src: Path, dst: Path, facts: dict[str, Any]) -> dict[str, Any]:
    import shutil

    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
    keep = ("backend", "static_shape", "outside_delegate", "quantized_by", "reference")
    return {**{k: facts[k] for k in keep if k in facts},
            "from_run": f"{src.parent.parent.name}/{src.parent.name}/{src.name} (the file the run's bench measured)"}


def write_executorch(run: RunView, models: Path) -> list:
    reused = [(role, compiled_file(run, role, "pte")) for role in ("student_fp32", "student_int8")]
    if all(c is not None for _, c in reused):  # lowered once, by the compile stage: copied, not built again
        return [_attempt("pte", f"{role}_pte", role, role.rsplit("_", 1)[1], ["executorch"], models / f"{role}.pte",
                         partial(_reuse, src, models / f"{role}.pte", facts), {}) for role, (src, facts) in reused]
    model, example = _student(run)
    out = [_attempt("pte", "student_fp32_pte", "student_fp32", "fp32", ["executorch"], models / "student_fp32.pte",
                    lambda: lower_pte(model, example, models / "student_fp32.pte"), {})]
    route = int8_route(run, "pte")
    if route is None:
        return out + [_no_int8(run, "pte", "student_int8_pte", ["executorch"])]
    dst = models / "student_int8.pte"
    out.append(_attempt("pte", "student_int8_pte", "student_int8", "int8", ["executorch"], dst,
                        lambda: lower_pte(_program(run, route, fold=True), example, dst),
                        {"quantized_by": route, "reference": f"pytorch_pt2e:{route}"}))
    return out


# ------------------------------------------------------------------------------------------------ LiteRT
def convert_tflite(model: Any, example: Any, dst: Path, route: str | None, io: str = "int8") -> dict[str, Any]:
    """FP32 (route None) or INT8 .tflite; INT8 with `io` "int8" (litert-torch's own) or "float" (float_io)."""
    import litert_torch

    kwargs = {}
    if route is not None:
        from litert_torch.quantize.quant_config import QuantConfig

        from edgekd.quant.pt2e import allow_train_eval, make_quantizer

        allow_train_eval(model).eval()  # an exported module is in training mode unless told (no BN/dropout left)

        kwargs["quant_config"] = QuantConfig(pt2e_quantizer=make_quantizer("pt2e-litert", qat=False))
    dst.parent.mkdir(parents=True, exist_ok=True)
    litert_torch.convert(model, (example,), **kwargs).export(str(dst))
    facts: dict[str, Any] = {"static_shape": list(example.shape), "layout": "NCHW as exported from PyTorch"}
    if route is not None:
        facts["io_requested"] = io
        if io == "float" and tflite_io(dst)["io"]["input"]["dtype"] != "float32":
            float_io(dst, dst)
    return {**facts, **tflite_io(dst)}


def _interpreter(path: Path) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    return interp


def tflite_io(path: Path) -> dict[str, Any]:
    """Input/output dtype, and scale/zero point where they are int8 (what a caller quantizes with)."""
    interp = _interpreter(path)

    def one(d: dict) -> dict[str, Any]:
        scale, zero = d["quantization"]
        info = {"dtype": d["dtype"].__name__, "shape": [int(v) for v in d["shape"]]}
        if d["dtype"].__name__ in ("int8", "uint8"):
            info.update(scale=float(scale), zero_point=int(zero))
        return info

    return {"io": {"input": one(interp.get_input_details()[0]), "output": one(interp.get_output_details()[0])}}


def tflite_integer_report(path: Path) -> dict[str, Any]:
    """Fully integer: no op reads or writes a float tensor, except a QUANTIZE of the model input and a
    DEQUANTIZE to the model output (float I/O). Any other float op is named (e.g. ADD x9)."""
    interp = _interpreter(path)
    dtype = {t["index"]: t["dtype"].__name__ for t in interp.get_tensor_details()}
    inputs = {d["index"] for d in interp.get_input_details()}
    outputs = {d["index"] for d in interp.get_output_details()}
    float_ops: Counter[str] = Counter()
    ops: Counter[str] = Counter()
    for op in interp._get_ops_details():  # noqa: SLF001 (the interpreter's only op listing)
        name = op["op_name"]
        ops[name] += 1
        ins = [i for i in op["inputs"] if i >= 0]
        outs = [o for o in op["outputs"] if o >= 0]
        if name == "QUANTIZE" and set(ins) <= inputs or name == "DEQUANTIZE" and set(outs) <= outputs:
            continue  # the float I/O boundary of a fully-integer model
        if any(dtype.get(t, "").startswith("float") for t in ins + outs):
            float_ops[name] += 1
    text = _ops_text(float_ops) or None
    return {"ok": not float_ops, "float_ops": dict(float_ops), "ops": dict(ops), "float_ops_text": text,
            "summary": f"not fully integer: float ops {text}" if text else "fully integer",
            "rule": "every op reads and writes int8/int32 tensors (a QUANTIZE of the input and a DEQUANTIZE of the "
                    "output are allowed)"}


def write_tflite(run: RunView, models: Path, io: str = "int8") -> list:
    model, example = _student(run)
    out = [_attempt("tflite", "student_fp32_tflite", "student_fp32", "fp32", ["litert"], models / "student_fp32.tflite",
                    lambda: convert_tflite(model, example, models / "student_fp32.tflite", None), {})]
    route = int8_route(run, "tflite")
    if route is None:
        return out + [_no_int8(run, "tflite", "student_int8_tflite", ["litert"])]
    dst = models / "student_int8.tflite"
    out.append(_attempt("tflite", "student_int8_tflite", "student_int8", "int8", ["litert"], dst,
                        lambda: convert_tflite(_program(run, route, fold=False), example, dst, route, io),
                        {"quantized_by": route, "reference": f"pytorch_pt2e:{route}",
                         "lowering": "litert_torch.convert with QuantConfig(PT2EQuantizer): STATIC Q/DQ"}))
    return out


# ----------------------------------------------------------------------------------------------- Core ML
def convert_coreml(model: Any, example: Any, dst: Path, int8: bool) -> dict[str, Any]:
    import coremltools as ct

    program = _export(model, example).run_decompositions({})
    ml = ct.convert(program, inputs=[ct.TensorType(name="input", shape=tuple(example.shape))],
                    outputs=[ct.TensorType(name="logits")], convert_to="mlprogram",
                    minimum_deployment_target=ct.target.iOS17,
                    compute_precision=ct.precision.FLOAT16 if int8 else ct.precision.FLOAT32)
    ml.save(str(dst))
    return {"static_shape": list(example.shape), "minimum_deployment_target": "iOS17",
            "compute_precision": "float16 between quantized ops" if int8 else "float32"}


def coreml_spec_report(path: Path, precision: str, shape: list[int]) -> dict[str, Any]:
    """The .mlpackage loaded as a spec (no Core ML runtime on Linux): I/O names and shapes, ML program op
    types, and whether INT8 weights and activations are present. Never counts as verified."""
    import coremltools as ct

    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    ops: Counter[str] = Counter()
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            for op in block.operations:
                ops[op.type] += 1
    io = {"inputs": [(d.name, list(d.type.multiArrayType.shape)) for d in spec.description.input],
          "outputs": [d.name for d in spec.description.output]}
    problems = []
    if io["inputs"] != [("input", shape)]:
        problems.append(f"input {io['inputs']} != [('input', {shape})]")
    if io["outputs"] != ["logits"]:
        problems.append(f"outputs {io['outputs']} != ['logits']")
    if precision == "int8":
        if not ops.get("constexpr_affine_dequantize"):
            problems.append("no int8 weights (constexpr_affine_dequantize)")
        if not ops.get("quantize"):
            problems.append("no int8 activations (quantize)")
    return {"spec_ok": not problems, "problems": problems, "io": io, "ml_program": bool(ops),
            "ops": dict(ops), "status": "converted, not run (needs macOS)"}


def write_coreml(run: RunView, models: Path) -> list:
    model, example = _student(run)
    dst = models / "student_fp32.mlpackage"
    out = [_attempt("mlpackage", "student_fp32_mlpackage", "student_fp32", "fp32", ["coreml"], dst,
                    lambda: convert_coreml(model, example, dst, int8=False), {})]
    route = int8_route(run, "mlpackage")
    if route is None:
        return out + [_no_int8(run, "mlpackage", "student_int8_mlpackage", ["coreml"])]
    dst8 = models / "student_int8.mlpackage"
    out.append(_attempt("mlpackage", "student_int8_mlpackage", "student_int8", "int8", ["coreml"], dst8,
                        lambda: convert_coreml(_program(run, route, fold=True), example, dst8, int8=True),
                        {"quantized_by": route, "scheme": "INT8 weights (per-channel) + INT8 activations"}))
    return out


def pt2e_references(run: RunView, x: Any) -> dict[str, Any]:
    """The PyTorch quantized reference of each PT2E program the run has: {'pytorch_pt2e:<route>': logits}."""
    import torch

    out: dict[str, Any] = {}
    if not run.has(PT2E_STAGE):
        return out
    with torch.no_grad():
        for art in run.manifest(PT2E_STAGE).artifacts:
            gm = _program(run, art.name, fold=False)
            out[f"pytorch_pt2e:{art.name}"] = gm(torch.from_numpy(x)).numpy()
    return out


def float_io(src: Path, dst: Path) -> None:
    """Rewrite an int8-I/O .tflite to float I/O: a QUANTIZE before the first op and a DEQUANTIZE after the last
    (the int8 body is untouched). litert-torch's STATIC lowering has no option for it; this edits the flatbuffer
    with LiteRT's own schema classes."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(src.read_bytes(), 0))
    sg = model.subgraphs[0]

    def opcode(builtin: int) -> int:
        for i, c in enumerate(model.operatorCodes):
            if max(c.builtinCode, c.deprecatedBuiltinCode) == builtin:
                return i
        code = fb.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
        model.operatorCodes.append(code)
        return len(model.operatorCodes) - 1

    def float_twin(index: int, suffix: str) -> int:
        old = sg.tensors[index]
        t = fb.TensorT()
        t.shape, t.type, t.name, t.buffer = list(old.shape), fb.TensorType.FLOAT32, (old.name or b"io") + suffix, 0
        t.shapeSignature = None if old.shapeSignature is None else list(old.shapeSignature)
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    def op(code: int, ins: list[int], outs: list[int]):
        o = fb.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = code, ins, outs
        return o

    new_in = [float_twin(i, b"_float") for i in sg.inputs]
    new_out = [float_twin(o, b"_float") for o in sg.outputs]
    quant, dequant = opcode(fb.BuiltinOperator.QUANTIZE), opcode(fb.BuiltinOperator.DEQUANTIZE)
    sg.operators = [op(quant, [f], [i]) for f, i in zip(new_in, sg.inputs)] + list(sg.operators) + \
        [op(dequant, [o], [f]) for o, f in zip(sg.outputs, new_out)]
    remap = dict(zip(sg.inputs, new_in)) | dict(zip(sg.outputs, new_out))
    sg.inputs, sg.outputs = new_in, new_out
    for sig in model.signatureDefs or []:
        for m in list(sig.inputs or []) + list(sig.outputs or []):
            m.tensorIndex = remap.get(m.tensorIndex, m.tensorIndex)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    dst.write_bytes(bytes(builder.Output()))
