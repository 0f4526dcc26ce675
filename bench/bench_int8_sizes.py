"""FP32 against INT8 file sizes of one finished run, for every format edgekd writes from its ONNX files.

    python bench/bench_int8_sizes.py RUN_DIR [RUN_DIR ...] [--arch mobilenet_v3_small]

For each run directory (a finished `edgekd compress`): the exported ONNX (FP32 student vs INT8 QDQ), the
OpenVINO IR (.xml + .bin: the compile stage's FP32 IR, the export stage's INT8 IR), ONNX Runtime's optimised
ONNX (levels basic and all, written here from the exported files as the compile stage does) and the ORT format
(.ort, the bundle's), with the INT8/FP32 ratio, and how many bytes of each ONNX file are weight initializers
stored in 8 bits. Prints a Markdown table; writes nothing into the run.

`--arch NAME`: the same table for an untrained registry model (10 classes, 32x32 RGB) quantized by NNCF on 64
seeded random images (no run needed), plus the QDQ ONNX as it was written before the weight fold (float32
weights -> QuantizeLinear -> DequantizeLinear), whose ONNX Runtime logits must equal the folded file's exactly.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _stage(run: Path, name: str) -> Path:
    report = json.loads((run / "report.json").read_text())
    return run / next(s["dir"] for s in report["stages"] if s["stage"] == name)


def _ir_bytes(xml: Path) -> int:
    return xml.stat().st_size + xml.with_suffix(".bin").stat().st_size


def _low_bit_bytes(path: Path) -> tuple[int, int]:
    """(bytes of 8-bit initializers, bytes of all initializers) of an ONNX file."""
    import onnx

    from edgekd.onnxfacts import LOW_BIT_TYPES

    inits = onnx.load(str(path), load_external_data=False).graph.initializer
    sizes = [(len(i.raw_data) or i.ByteSize(), i.data_type in LOW_BIT_TYPES) for i in inits]
    return sum(n for n, low in sizes if low), sum(n for n, _ in sizes)


def sizes(run: Path, work: Path) -> list[tuple[str, int, int, str]]:
    from edgekd.runtimes import get_runtime
    from edgekd.runtimes.base import RuntimeSettings
    from edgekd.runtimes.onnxruntime import to_ort_format

    export, compile_dir = _stage(run, "export"), _stage(run, "compile")
    fp32, int8 = export / "student_fp32.onnx", export / "student_int8_qdq.onnx"
    low, total = _low_bit_bytes(int8)
    rows = [("exported ONNX (INT8: QDQ)", fp32.stat().st_size, int8.stat().st_size,
             f"INT8 file: {low:,} of {total:,} initializer bytes are 8-bit")]
    fp32_ir = next((compile_dir / "student_fp32").glob("*.xml"), None)
    if fp32_ir is not None and (export / "student_int8.xml").is_file():
        rows.append(("OpenVINO IR .xml + .bin", _ir_bytes(fp32_ir), _ir_bytes(export / "student_int8.xml"),
                     f"INT8 .bin {(export / 'student_int8.bin').stat().st_size:,} B"))
    ort = get_runtime("onnxruntime")
    for level in ("basic", "all"):
        out = [ort.compile(p, work / f"{level}-{p.stem}", RuntimeSettings(device="CPU", precision=prec,
                                                                          graph_optimization=level)).path
               for p, prec in ((fp32, "fp32"), (int8, "int8"))]
        low, total = _low_bit_bytes(out[1])
        rows.append((f"ONNX Runtime optimised ONNX, level {level}", out[0].stat().st_size, out[1].stat().st_size,
                     f"INT8 file: {low:,} of {total:,} initializer bytes are 8-bit"))
    ort_files = []
    for p in (fp32, int8):
        to_ort_format(p, work / f"{p.stem}.ort", "extended")
        ort_files.append((work / f"{p.stem}.ort").stat().st_size)
    rows.append(("ORT format .ort (level extended, as the bundle writes it)", *ort_files, ""))
    return rows


def untrained(arch: str, work: Path) -> tuple[list[tuple[str, int, int, str]], str]:
    import numpy as np
    import onnxruntime as ort
    import torch

    import edgekd.export.qdq_weights as qw
    from edgekd.export import check_parity, export_onnx
    from edgekd.models.registry import build_model
    from edgekd.quant import QuantSpec, export_openvino_ir, export_qdq_onnx, quantize
    from edgekd.runtimes import get_runtime
    from edgekd.runtimes.base import RuntimeSettings

    torch.manual_seed(0)
    model = build_model(arch, 10, 3, input_size=32).eval()
    x = torch.randn(96, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    q = quantize(model, [x[:64]], QuantSpec(subset_size=64), x[:2])
    fp32 = Path(export_onnx(model, work / "fp32.onnx", x[:2])["path"])
    int8 = work / "int8.onnx"
    export_qdq_onnx(q, int8, x[:2])
    fold, qw.fold_weight_quantizers = qw.fold_weight_quantizers, lambda m: {}
    try:
        export_qdq_onnx(q, work / "unfolded.onnx", x[:2])
    finally:
        qw.fold_weight_quantizers = fold
    export_openvino_ir(q, work / "int8.xml", x[:2])
    fp32_ir = get_runtime("openvino").compile(fp32, work / "ir32", RuntimeSettings(device="CPU")).path
    feed = {"input": x[64:].numpy()}
    same = np.array_equal(*(ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, feed)[0]
                            for p in (int8, work / "unfolded.onnx")))
    parity = check_parity(int8, q, x[64:].numpy(), "int8", batch_sizes=(1, 7))
    low, total = _low_bit_bytes(int8)
    rows = [("QDQ ONNX before the fold (float32 weights -> Q -> DQ)", fp32.stat().st_size,
             (work / "unfolded.onnx").stat().st_size, ""),
            ("QDQ ONNX (int8 weights -> DQ)", fp32.stat().st_size, int8.stat().st_size,
             f"{low:,} of {total:,} initializer bytes are 8-bit"),
            ("OpenVINO IR .xml + .bin", _ir_bytes(fp32_ir), _ir_bytes(work / "int8.xml"), "")]
    note = (f"ONNX Runtime logits of the folded and unfolded QDQ files identical: {same}; INT8 parity vs the NNCF "
            f"model: passed={parity.passed}, top-1 agreement {min(b.top1_agreement for b in parity.batches):.3f}")
    return rows, note


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", type=Path)
    ap.add_argument("--arch", action="append", default=[], help="an untrained registry model (repeatable)")
    args = ap.parse_args()
    cpu = next((ln.split(":", 1)[1].strip() for ln in subprocess.run(["lscpu"], capture_output=True, text=True)
                .stdout.splitlines() if ln.startswith("Model name")), "?")
    print(f"CPU: {cpu}")
    for run in args.runs:
        with tempfile.TemporaryDirectory() as tmp:
            rows = sizes(run, Path(tmp))
        print(f"\n{run}")
        _table(rows)
    for arch in args.arch:
        with tempfile.TemporaryDirectory() as tmp:
            rows, note = untrained(arch, Path(tmp))
        print(f"\n{arch} (untrained, 10 classes, 32x32)\n")
        _table(rows)
        print(f"\n{note}")


def _table(rows: list[tuple[str, int, int, str]]) -> None:
    print("\n| format | FP32 student | INT8 student | INT8 / FP32 | note |\n|---|---|---|---|---|")
    for name, a, b, note in rows:
        print(f"| {name} | {a:,} B | {b:,} B | {b / a:.2f} | {note} |")


if __name__ == "__main__":
    main()
