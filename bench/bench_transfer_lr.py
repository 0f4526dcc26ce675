"""The finetune backbone's learning-rate share for a teacher trained here (issue 14's quickstart): the
embedded digits' teacher (cifar_resnet20, trained on digits 0-4, then a hybrid transfer to all ten) at
--backbone-lr-mult 0.1 (the old default) against 1.0 (the default for a teacher trained here), over split
seeds and training seeds, with the default epochs; `--data` runs the same on a folder (as `compress --data`).

    python bench/bench_transfer_lr.py [--work /tmp/edgekd-transfer-lr] [--splits 0 1 2] [--seeds 0 1 2]
                                      [--mults 0.1 1.0] [--threads 1] [--no-write]
                                      [--data DIR --max-train-per-class N --max-test-per-class N]

Only the teacher and finetune stages run, through edgekd's own pipeline (`build_specs` + `run_pipeline`),
one run folder per (split seed, seed), so both shares reuse the same teacher. The fine-tuned teacher is
evaluated on the test split here, once per cell; every decision inside the stages used val. Prints a table
and replaces its section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_runtime_overhead import machine, publish  # noqa: E402

NAME = "bench_transfer_lr"


def finetuned_top1(work: Path, split: int, seed: int, mult: float, threads: int,
                   data_opts: dict) -> tuple[float, float, float]:
    """(val, test top-1, seconds) of the fine-tuned teacher for one cell."""
    import torch
    from rich.console import Console

    from edgekd.data.dataset import DataConfig, load_data
    from edgekd.pipeline import run_pipeline
    from edgekd.plan import CompressOptions, build_specs
    from edgekd.stages.common import load_model
    from edgekd.targets import load_target
    from edgekd.train.evaluate import accuracy

    torch.set_num_threads(threads)
    opts = CompressOptions(split_seed=split, seed=seed, backbone_lr_mult=mult, student="small_cnn", **data_opts)
    data = load_data(DataConfig(source=opts.data, split_seed=split, max_train_per_class=opts.max_train_per_class,
                                max_test_per_class=opts.max_test_per_class), work / ".cache")
    specs = build_specs(opts, load_target("intel-cpu"), data.preprocessing.channels, data.preprocessing.input_size)
    specs = [s for s in specs if s.name in ("teacher", "finetune")]
    t0 = time.perf_counter()
    outcomes = run_pipeline(specs, work / f"split{split}-seed{seed}", fingerprint=lambda: data.fingerprint,
                            data_loader=lambda: data, console=Console(stderr=True), progress=None)
    wall = time.perf_counter() - t0
    finetune = outcomes[-1]
    model, _ = load_model(finetune.stage_dir, finetune.manifest)
    model.eval()
    return (accuracy(model, data.val, data.preprocessing), accuracy(model, data.test, data.preprocessing), wall)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgekd-transfer-lr"))
    ap.add_argument("--splits", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--mults", type=float, nargs="+", default=[0.1, 1.0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default="digits", help="as compress --data (default: the embedded digits)")
    ap.add_argument("--max-train-per-class", type=int)
    ap.add_argument("--max-test-per-class", type=int)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    started = machine()
    rows, tests = [], {m: [] for m in args.mults}
    data_opts = dict(data=args.data, max_train_per_class=args.max_train_per_class,
                     max_test_per_class=args.max_test_per_class)
    name = "digits" if args.data == "digits" else Path(args.data).name
    for split in args.splits:
        for seed in args.seeds:
            for mult in args.mults:
                val, test, wall = finetuned_top1(args.work / name, split, seed, mult, args.threads, data_opts)
                tests[mult].append(test)
                rows.append(f"| {split} | {seed} | {mult:g} | {100 * val:.2f}% | {100 * test:.2f}% | {wall:.1f} |")
                print(rows[-1], flush=True)
    data_flags = "" if args.data == "digits" else (
        f" --data {args.data}" + "".join(f" --{k.replace('_', '-')} {v}" for k, v in data_opts.items()
                                         if k != "data" and v is not None))
    lines = [
        f"## Transfer learning rate of a teacher trained here ({name})",
        "",
        f"Command: `python bench/bench_transfer_lr.py{data_flags} --splits {' '.join(map(str, args.splits))} "
        f"--seeds {' '.join(map(str, args.seeds))} --mults {' '.join(f'{m:g}' for m in args.mults)} "
        f"--threads {args.threads}` on {started}.",
        "The default teacher (cifar_resnet20) trains on the first half of the classes (the source task) for the "
        "default 6 epochs, then the hybrid transfer (1 probe epoch, then the default 10 epochs of everything) "
        "learns all classes with the backbone at `--backbone-lr-mult` times the head's learning rate. Top-1 of "
        "the fine-tuned teacher in PyTorch; seconds are the wall time of both stages (the teacher stage is "
        "reused by the second share, so the first row of a pair includes it).",
        "",
        "| split seed | seed | backbone lr share | val top-1 | test top-1 | s |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        *(f"- share {m:g}: test top-1 mean {100 * statistics.mean(v):.2f}%, min {100 * min(v):.2f}%, max "
          f"{100 * max(v):.2f}% over {len(v)} runs" for m, v in tests.items()),
    ]
    publish(lines, NAME if args.data == "digits" else f"{NAME}_{name}", write=not args.no_write)


if __name__ == "__main__":
    main()
