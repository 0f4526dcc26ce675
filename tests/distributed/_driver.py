"""Run the training stages (teacher -> finetune -> distill) of `compress` through the real pipeline.

Launched by the tests, in one process or under torchrun. Every call of save_manifest is logged (with the
rank) into LOG_DIR, so a test can count who wrote what. Rank 0 writes LOG_DIR/result.json.

    python _driver.py RUN_DIR LOG_DIR '{"batch_size": 32, ...}' [PHASE:EPOCH]   (compress options as JSON)

With PHASE:EPOCH, the last rank exits abruptly (os._exit, no cleanup) right after that epoch's checkpoint is on
disk, as a crashed or killed process would: a callback on edgekd.train.loop.EPOCH_END.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path


def main() -> int:
    run_dir, log_dir, options = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
    log_dir.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", "0"))
    if len(sys.argv) > 4:
        _die_after(*sys.argv[4].split(":"))

    import edgekd.pipeline as pipeline
    from edgekd.cli.common import guarded
    from edgekd.runner import data_config
    from edgekd.data.dataset import load_data
    from edgekd.plan import build_specs, validate_options
    from edgekd.targets import load_target
    from rich.console import Console

    real_save = pipeline.save_manifest

    def logged_save(manifest, folder):
        with open(log_dir / f"manifests-rank{rank}.log", "a") as f:
            f.write(f"{manifest.stage}\n")
        return real_save(manifest, folder)

    pipeline.save_manifest = logged_save

    @guarded
    def run() -> int:
        opts = validate_options(options)
        target = load_target(opts.target)
        data_cfg = data_config(opts, target)
        load = functools.lru_cache(maxsize=1)(lambda: load_data(data_cfg, run_dir / ".cache"))
        dataset = load()
        specs = build_specs(opts, target, dataset.preprocessing.channels)[:3]  # teacher, finetune, distill
        outcomes = pipeline.run_pipeline(specs, run_dir, fingerprint=lambda: dataset.fingerprint,
                                         data_loader=load, console=Console(quiet=True), progress=None)
        if rank == 0:
            result = {o.spec.name: {"id": o.manifest.id, "skipped": o.skipped, "metrics": o.manifest.metrics}
                      for o in outcomes}
            (log_dir / "result.json").write_text(json.dumps(result, default=str))
        return 0

    try:
        run()
    except SystemExit as exc:  # typer.Exit from guarded carries the exit code
        return int(getattr(exc, "exit_code", exc.code) or 0)
    except Exception as exc:  # noqa: BLE001
        if type(exc).__name__ == "Exit":
            return int(exc.exit_code)
        raise
    return 0


def _die_after(phase: str, epoch: str) -> None:
    from edgekd.train.loop import EPOCH_END

    def die(name: str, done: int, ctx) -> None:
        if name == phase and done == int(epoch) and ctx.rank == ctx.world - 1:
            sys.stderr.write(f"rank {ctx.rank}: exiting after {name} epoch {done} (test)\n")
            sys.stderr.flush()
            os._exit(17)

    EPOCH_END.append(die)


if __name__ == "__main__":
    sys.exit(main())
