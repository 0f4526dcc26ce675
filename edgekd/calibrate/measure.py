"""`edgekd calibrate --target T`: measure a fixed set of models on the device, fit the roofline's efficiency and
overhead fields, and write the profile overlay (edgekd.runtimes.calibration applies it).

The set is built here, untrained (latency does not depend on the weights' values), so nothing is downloaded:
CIFAR ResNet-20/32/56 at 32x32, ResNet-20 at 16x16 and ResNet-32 at 8x8 (1 channel), small_cnn at 8x8 and 16x16
(1 channel) and 32x32, MobileNetV3-Small and ResNet-18 at 64x64 (inputs from 8 to 64 pixels, 4 to 56 heavy
layers); each in
FP32 and INT8 (ONNX Runtime's static QDQ quantization, per-channel, 8 seeded random calibration inputs). Building
needs torch (the `train` extra); measuring needs the target's runtime; the device must be the profile's
(identity), or the fit would describe another machine: `allow_host_mismatch` (--allow-host-mismatch) fits on a
host that is not it anyway, and the overlay's sources, its summary and the printed report then say so.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edgekd.calibrate.fit import PARAMS, Point, fit, leave_one_model_out, predict, summary
from edgekd.errors import UsageError, require

# (name, architecture, channels, input side, classes)
CALIBRATION_SET = (
    ("resnet20_cifar", "cifar_resnet20", 3, 32, 10),
    ("resnet20_16", "cifar_resnet20", 3, 16, 10),
    ("resnet32_cifar", "cifar_resnet32", 3, 32, 10),
    ("resnet56_cifar", "cifar_resnet56", 3, 32, 10),
    ("resnet32_8", "cifar_resnet32", 1, 8, 10),
    ("small_cnn_16", "small_cnn", 1, 16, 10),
    ("small_cnn_32", "small_cnn", 3, 32, 10),
    ("small_cnn_8", "small_cnn", 1, 8, 10),
    ("mobilenet_v3_small_64", "mobilenet_v3_small", 3, 64, 10),
    ("resnet18_64", "resnet18", 3, 64, 10),
)


def build_set(work: Path, only: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Export each model of the set to FP32 ONNX and its QDQ INT8 copy; [{name, shape, fp32, int8}]."""
    torch = require("torch", "train", "edgekd calibrate builds its models with PyTorch")
    quant = require("onnxruntime.quantization", "cpu", "edgekd calibrate quantizes its models with ONNX Runtime")
    from edgekd.export.onnx_export import export_onnx
    from edgekd.models.registry import build_model

    out = []
    for name, arch, ch, side, classes in CALIBRATION_SET:
        if only and name not in only:
            continue
        torch.manual_seed(0)
        model = build_model(arch, classes, in_channels=ch, pretrained=False, input_size=side).eval()
        fp32 = work / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_onnx(model, fp32, torch.zeros(1, ch, side, side))
        int8 = work / f"{name}_int8.onnx"
        shape = (1, ch, side, side)

        class Reader(quant.CalibrationDataReader):
            def __init__(self) -> None:
                rng = np.random.default_rng(0)
                self._it = iter([{"input": rng.standard_normal(shape, dtype=np.float32)} for _ in range(8)])

            def get_next(self):  # noqa: ANN201
                return next(self._it, None)

        root = logging.getLogger()
        level, root.level = root.level, logging.ERROR  # ORT's quantizer logs advice per tensor on the root logger
        try:  # u8 activations, s8 per-channel weights: what OpenVINO's CPU plugin runs as int8 (s8 activations
            # from this quantizer fail OpenVINO's shape inference on its inserted Subtract)
            quant.quantize_static(str(fp32), str(int8), Reader(), quant_format=quant.QuantFormat.QDQ,
                                  activation_type=quant.QuantType.QUInt8, weight_type=quant.QuantType.QInt8,
                                  per_channel=True)
        finally:
            root.level = level
        out.append({"name": name, "shape": shape, "fp32": fp32, "int8": int8})
    return out


def roofline_terms(onnx: Path, target: Any, precision: str) -> tuple[float, float, float, int]:
    """(compute in float at peak, compute in int8 at peak, memory at peak bandwidth, heavy layers), in ms."""
    from edgekd.runtimes.roofline import estimate_latency

    d = target.device
    facts = {k: v for k, v in {"peak_tops_int8": d.peak_int8_tops, "peak_tflops_fp16": d.peak_fp16_tflops,
                               "peak_tflops_fp32": d.peak_fp32_tflops,
                               "mem_bandwidth_gbs": d.memory_bandwidth_gbs}.items() if v}
    full = estimate_latency(onnx, {**facts, "compute_efficiency": 1.0, "memory_efficiency": 1.0}, precision)
    if precision != "int8":
        return full.compute_ms, 0.0, full.memory_ms, full.layers
    half = estimate_latency(onnx, {**facts, "compute_efficiency": 1.0, "memory_efficiency": 1.0,
                                   "compute_efficiency_int8": 0.5}, precision)
    c8 = half.compute_ms - full.compute_ms
    return full.compute_ms - c8, c8, full.memory_ms, full.layers


def float_precision(target: Any) -> str:
    """The precision bench estimates a float model at for this device (as edgekd.cli.bench_cmd does)."""
    return "fp16" if target.device.peak_fp16_tflops else "fp32"


def measure_points(items: list[tuple[str, str, Path, tuple[int, ...]]], target: Any, seconds: float, rounds: int,
                   progress: Any = None) -> dict[tuple[str, str], float]:
    """p50 of each (model, precision, path, shape), measured round-robin `rounds` times (every model once per
    round, so a busy spell on a shared machine hits all of them alike); each point's figure is the median of its
    rounds."""
    from edgekd.benchmark import settings_for
    from edgekd.runtimes import get_runtime
    from edgekd.runtimes.timing import measure_latency

    rt = get_runtime(target.runtime.name)
    loaded = []
    for model, precision, path, shape in items:
        session = rt.load(path, settings_for(target, "int8" if precision == "int8" else "fp32"))
        loaded.append((model, precision, session, np.random.default_rng(0).standard_normal(shape).astype(np.float32)))
    runs: dict[tuple[str, str], list[float]] = {}
    for r in range(rounds):
        for model, precision, session, x in loaded:
            stats = measure_latency(lambda: session.infer(x), warmup_runs=20, warmup_s=0.2, min_runs=200,
                                    min_s=seconds, max_s=max(10 * seconds, 5.0))
            runs.setdefault((model, precision), []).append(stats.median_ms)
            if progress is not None:
                progress(f"round {r + 1}/{rounds} {model} {precision}: p50 {stats.median_ms:.4f} ms")
    return {k: float(np.median(v)) for k, v in runs.items()}


def start_values(target: Any) -> dict[str, float]:
    from edgekd.runtimes.calibration import DEFAULTS

    d = target.device
    ce = d.compute_efficiency or DEFAULTS["compute_efficiency"]
    return {"compute_efficiency": ce, "compute_efficiency_int8": d.compute_efficiency_int8 or ce,
            "memory_efficiency": d.memory_efficiency or DEFAULTS["memory_efficiency"],
            "layer_overhead_us": d.layer_overhead_us if d.layer_overhead_us is not None else DEFAULTS["layer_overhead_us"],
            "call_overhead_us": d.call_overhead_us or DEFAULTS["call_overhead_us"]}


def calibrate(target_name: str, out: Path | None = None, seconds: float = 1.0, only: tuple[str, ...] = (),
              progress: Any = None, rounds: int = 3, extra: list[tuple[str, str, Path, tuple[int, ...]]] = (),
              allow_host_mismatch: bool = False) -> dict[str, Any]:
    """Measure the set on this machine (which must be the target's device), fit, write the overlay; the report.
    `extra` items (name, precision, file, input shape) are measured in the same rounds but not fitted: their p50s
    come back in report['extra_measured'] (bench/bench_calibration.py judges estimates with them)."""
    from edgekd.devicebuild.environment import runtime_version
    from edgekd.manifest import now_iso
    from edgekd.runtimes.calibration import overlay_path
    from edgekd.runtimes.identity import check_target, host_facts
    from edgekd.targets import available_targets, load_target, load_target_file

    target = load_target(target_name)
    ident = check_target(target)
    mismatch = None
    if not ident.matches:
        if not allow_host_mismatch:
            raise UsageError(f"edgekd calibrate measures on the device: this machine is not {target.name}'s device "
                             f"({ident.why}); run it there (`edgekd targets --check` says which profiles match "
                             "here), or pass --allow-host-mismatch to fit on this host anyway (every output then "
                             "says so)")
        mismatch = (f"HOST MISMATCH (--allow-host-mismatch): fitted on this host, not on {target.device.name} "
                    f"({ident.why})")
    if mismatch is None:
        runnable = target.host_measurable
    else:  # the device's runtime and device type on this host (as the gate's --allow-host-mismatch)
        from edgekd.runtimes.host import host_can_run

        runnable = host_can_run(target.runtime.name, target.runtime.device,
                                host_facts().arch if target.device.arch == "any" else target.device.arch)
    if not runnable:
        raise UsageError(f"{target.runtime.name} cannot run on {target.runtime.device} here: install it "
                         f"(pip install 'edgekd[{'gpu' if target.runtime.name == 'tensorrt' else 'cpu'}]')")
    profile_file = available_targets().get(target.name, Path(target_name))
    start = start_values(load_target_file(profile_file, overlay=False))  # the profile's own fields, not an older fit
    points: list[Point] = []
    with tempfile.TemporaryDirectory(prefix="edgekd-calibrate-") as tmp:
        models = build_set(Path(tmp), only)
        items = [(m["name"], prec, path, m["shape"]) for m in models
                 for prec, path in ((float_precision(target), m["fp32"]), ("int8", m["int8"]))]
        measured = measure_points(items + list(extra), target, seconds, rounds, progress)
        for name, precision, path, _ in items:
            cf, c8, mem, layers = roofline_terms(path, target, precision)
            points.append(Point(name, precision, measured[(name, precision)], cf, c8, mem, layers))
    if len({p.model for p in points}) < 3:
        raise UsageError("calibration needs at least 3 models (leave-one-model-out fits on the others)")
    theta = fit(points, start)
    loo = leave_one_model_out(points, start)
    for row in loo:
        p = Point(**{k: row[k] for k in Point.__dataclass_fields__})
        row["prior_estimate_ms"], row["fitted_estimate_ms"] = predict(p, start), predict(p, theta)
    stats = summary(loo)
    prior = np.abs([(r["prior_estimate_ms"] / r["measured_ms"] - 1) * 100 for r in loo])
    stats["prior_mean_abs_error_pct"] = round(float(prior.mean()), 1)
    facts = host_facts()
    fitted_at = now_iso()
    summary_block = {**stats, "host_mismatch": mismatch, "rounds": rounds, "seconds_per_measurement": seconds, "fitted_at": fitted_at, "host": facts.summary(),
                     "runtime": f"{target.runtime.name} {runtime_version(target.runtime.name)} {target.runtime.device}",
                     "points": [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()} for r in loo]}
    source = (f"fitted by edgekd calibrate on {facts.summary()} ({fitted_at}, {summary_block['runtime']}) from "
              f"{stats['models']} models x 2 precisions ({rounds} interleaved rounds); leave-one-model-out error mean {stats['mean_abs_error_pct']}%, "
              f"max {stats['max_abs_error_pct']}%")
    if mismatch:
        source = f"{mismatch}; {source}"
    overlay = {"target": target.name, "device": {k: round(theta[k], 6) for k in PARAMS},
               "sources": {k: source for k in PARAMS}, "calibration": summary_block}
    path = out or overlay_path(profile_file, target.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# written by edgekd calibrate; applied on top of the profile by edgekd.runtimes.calibration\n"
                    + yaml.safe_dump(overlay, sort_keys=False, width=120), encoding="utf-8")
    return {"overlay": str(path), "fitted": theta, "prior": start, **summary_block,
            "extra_measured": {f"{n}|{prec}": measured[(n, prec)] for n, prec, _, _ in extra}}
