"""NNCF's C++ fake-quant extension versus PyTorch kernels (edgekd's, NNCF's reference), side by side in one process.

    OMP_NUM_THREADS=1 python bench/bench_nncf_extension.py [--rounds 20] [--quantize-rounds 2] [--batch 128]
        [--cold-dir /tmp/x] [--no-results]

Model: a CIFAR ResNet-20 (edgekd's ``cifar_resnet20``, 10 classes, 3x32x32), seeded random weights and
seeded random images (timing and parity do not depend on the values). It is quantized with edgekd's own
``edgekd.quant.quantize`` (NNCF PTQ, 'trt' and 'mixed' presets, 300 calibration images) and trained with
``prepare_for_qat`` + SGD + cross-entropy: one QAT step = forward, backward and optimizer step of the
fake-quant student (edgekd's QAD step adds a float teacher forward, the same for both kernels).

Kernel sets: the extension; ``edgekd.quant.kernels`` (what edgekd installs); NNCF's reference.ReferenceQuantize
run eagerly. Measured interleaved (in each round every set runs back to back, the order rotated every round,
so a shared machine's swings hit all of them):
- load: the extension's load time from the torch extensions cache (warm), and, with ``--cold-dir DIR``, its
  build time into an empty private ``TORCH_EXTENSIONS_DIR`` (DIR is emptied first; never the user's cache);
- quantize: wall time of ``edgekd.quant.quantize`` (NNCF calibration, range init, the check forward);
- QAT step: one step per set per round; the median of the per-round ratios (robust to a machine whose speed
  changes between rounds);
- kernel: one activation quantizer's forward + backward on a (batch, 16, 32, 32) tensor, likewise;
- parity: max |difference| of the outputs and of every gradient between the two kernels on one batch.
Appends (replaces) its section of bench/RESULTS.md unless ``--no-results``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from bench_runtime_overhead import machine, publish  # noqa: E402

NAME = "bench_nncf_extension"


def load_extension() -> tuple[object, float]:
    """Build-or-load NNCF's CPU extension now; returns the module and the seconds it took."""
    from nncf.torch.quantization.extensions import QuantizedFunctionsCPULoader
    from nncf.torch.quantization.reference import ReferenceQuantizedFunctions

    t0 = time.perf_counter()
    module = QuantizedFunctionsCPULoader.load()
    seconds = time.perf_counter() - t0
    if module is ReferenceQuantizedFunctions:
        raise SystemExit("NNCF could not build its C++ extension here (it fell back); nothing to compare")
    return module, seconds


def cold_build(cold_dir: Path) -> float:
    """Build the extension in a fresh process into an emptied private TORCH_EXTENSIONS_DIR; seconds."""
    import subprocess

    if cold_dir.resolve() == (Path.home() / ".cache" / "torch_extensions").resolve():
        raise SystemExit("--cold-dir must not be the shared torch extensions cache")
    shutil.rmtree(cold_dir, ignore_errors=True)
    cold_dir.mkdir(parents=True)
    code = ("import time; t=time.perf_counter(); "
            "from nncf.torch.quantization.extensions import QuantizedFunctionsCPULoader as L; "
            "from nncf.torch.quantization.reference import ReferenceQuantizedFunctions as R; "
            "m=L.load(); assert m is not R, 'build failed'; print(time.perf_counter()-t)")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "TORCH_EXTENSIONS_DIR": str(cold_dir)},
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def nncf_reference_eager() -> type:
    """NNCF's own pure-torch fallback (reference.ReferenceQuantize) without its torch.compile wrapper."""
    from nncf.torch.quantization.reference import ReferenceBackendType, ReferenceQuantize

    impl = ReferenceQuantize(backend_type=ReferenceBackendType.TORCH)
    return type("NNCFReferenceEager", (), {"Quantize_forward": staticmethod(impl.forward),
                                           "Quantize_backward": staticmethod(impl.backward)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20, help="QAT-step rounds (x10 kernel-call rounds)")
    ap.add_argument("--quantize-rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--cold-dir", type=Path, default=None)
    ap.add_argument("--no-results", action="store_true")
    args = ap.parse_args()
    started = dt.datetime.now(dt.timezone.utc)
    where = machine()
    cold_s = cold_build(args.cold_dir) if args.cold_dir else None

    import torch

    import nncf
    from edgekd.models.cifar_resnet import cifar_resnet
    from edgekd.quant import kernels
    from edgekd.quant.nncf_quant import QuantSpec, prepare_for_qat, quantize

    nncf.set_log_level(40)
    ext, load_s = load_extension()
    ref = kernels.torch_kernels()
    sets = {"extension": ext, "torch": ref, "nncf-reference": nncf_reference_eager()}
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = cifar_resnet(20, num_classes=10, in_channels=3).eval()
    calib = [torch.randn(60, 3, 32, 32, generator=g) for _ in range(5)]
    example = torch.randn(1, 3, 32, 32, generator=g)
    x = torch.randn(args.batch, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (args.batch,), generator=g)

    def quantize_with(name: str, preset: str) -> tuple[torch.nn.Module, float]:
        kernels.install(sets[name])
        t0 = time.perf_counter()
        qmodel = quantize(model, calib, QuantSpec(preset=preset, subset_size=300), example)
        return qmodel, time.perf_counter() - t0

    # parity: one quantized model, the same batch through both kernel sets
    parity = {}
    for preset in ("trt", "mixed"):
        qmodel = prepare_for_qat(quantize_with("extension", preset)[0])
        results = {}
        for name in sets:
            kernels.install(sets[name])
            qmodel.zero_grad(set_to_none=True)
            out = qmodel(x)
            torch.nn.functional.cross_entropy(out, y).backward()
            results[name] = (out.detach().clone(), {n: p.grad.clone() for n, p in qmodel.named_parameters()
                                                    if p.grad is not None})
        o1, g1 = results["extension"]
        for name in list(sets)[1:]:
            o2, g2 = results[name]
            rel = max(float((g1[n] - g2[n]).abs().max() / g1[n].abs().max().clamp_min(1e-12)) for n in g1)
            parity[(preset, name)] = (float((o1 - o2).abs().max()), rel, len(g1), sorted(g1) == sorted(g2))

    others = list(sets)[1:]

    def rotated(r: int) -> list[str]:
        return list(sets)[r % len(sets):] + list(sets)[:r % len(sets)]

    def paired(fn, rounds: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        """fn(name) -> seconds, called for every kernel set in each round (order rotated); times and ratios."""
        times: dict[str, list[float]] = {n: [] for n in sets}
        ratios: dict[str, list[float]] = {n: [] for n in others}
        for r in range(rounds):
            per = {n: fn(n) for n in rotated(r)}
            for n in sets:
                times[n].append(per[n])
            for n in others:
                ratios[n].append(per[n] / per["extension"])
        return times, ratios

    opt = torch.optim.SGD(qmodel.parameters(), lr=1e-4, momentum=0.9)  # the last parity model (mixed preset)

    def qat_step(name: str) -> float:
        kernels.install(sets[name])
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(qmodel(x), y).backward()
        opt.step()
        return time.perf_counter() - t0

    act = torch.randn(args.batch, 16, 32, 32, generator=g) * 2  # the first stage's activations
    act_low, act_range = torch.tensor([-4.0]), torch.tensor([8.0])
    grad_act = torch.randn(act.shape, generator=g)

    def kernel_call(name: str) -> float:
        k = sets[name]
        t0 = time.perf_counter()
        k.Quantize_forward(act, act_low, act_range, 256)
        k.Quantize_backward(grad_act, act, act_low, act_range, 256, 0, 255, True)
        return time.perf_counter() - t0

    quant_t, quant_r = paired(lambda n: quantize_with(n, "trt")[1], args.quantize_rounds)
    for n in sets:  # warm-up
        qat_step(n)
        kernel_call(n)
    step_t, step_r = paired(qat_step, args.rounds)
    kern_t, kern_r = paired(kernel_call, 10 * args.rounds)
    kernels.install(ref)

    med = statistics.median
    lines = [
        "## NNCF's C++ fake-quant extension vs PyTorch kernels (issue 12)", "",
        f"- command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} "
        "python bench/bench_nncf_extension.py "
        f"--rounds {args.rounds} --quantize-rounds {args.quantize_rounds} --batch {args.batch}"
        f"{' --cold-dir ' + str(args.cold_dir) if args.cold_dir else ''}`; {started:%Y-%m-%d %H:%M} UTC",
        f"- machine: {where}; torch {torch.__version__}, nncf {nncf.__version__}, torch threads "
        f"{torch.get_num_threads()}",
        f"- model: CIFAR ResNet-20 (3x32x32, random weights and images), batch {args.batch}, edgekd.quant.quantize "
        "(300 calibration images) + prepare_for_qat; QAT step = forward + backward + SGD step of the fake-quant model",
        "",
        "| kernels | extension load | quantize (median) | QAT step (median) "
        "| one activation quantizer fwd+bwd (median) |",
        "|---|---|---|---|---|",
        f"| NNCF C++ extension | {load_s:.2f} s from the warm cache"
        f"{f'; {cold_s:.1f} s cold build (fresh process, empty private cache)' if cold_s is not None else ''} | "
        f"{med(quant_t['extension']):.2f} s | {1e3 * med(step_t['extension']):.1f} ms | "
        f"{1e3 * med(kern_t['extension']):.2f} ms |",
    ]
    labels = {"torch": "edgekd.quant.kernels (the extension's ATen calls from Python; what edgekd uses)",
              "nncf-reference": "NNCF's reference.ReferenceQuantize, eager (its fallback without torch.compile)"}
    for n in others:
        lines.append(f"| {labels[n]} | none | {med(quant_t[n]):.2f} s | {1e3 * med(step_t[n]):.1f} ms | "
                     f"{1e3 * med(kern_t[n]):.2f} ms |")
    lines.append("")

    def spread(r: list[float]) -> str:
        q = statistics.quantiles(r, n=4) if len(r) > 1 else [r[0], r[0], r[0]]
        return f"{med(r):.3f} (IQR {q[0]:.3f}-{q[2]:.3f}, n={len(r)})"

    for n in others:
        lines.append(f"- {n} / extension, median of per-round ratios (each round times every set back to back, "
                     f"order rotated): QAT step {spread(step_r[n])}; activation quantizer fwd+bwd "
                     f"{spread(kern_r[n])}; quantize {spread(quant_r[n])}. Below 1 = faster than the extension.")
    for (preset, name), (d_out, rel, n, same) in parity.items():
        lines.append(f"- parity {name} vs extension ({preset} preset, one batch, {n} parameters, same set: {same}): "
                     f"max |logit diff| {d_out:.3g}, max gradient diff / gradient's max {rel:.3g}")
    publish(lines, NAME, write=not args.no_results)


if __name__ == "__main__":
    main()
