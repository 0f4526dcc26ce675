"""Process memory and artifact size, without psutil; the one memory measurement of compress, bench and gate.

Memory of a model, as every command reports it (`measure_memory`): the peak resident memory the runtime adds to
load and run the model, measured in a fresh child process. The child imports the runtime's library and reads
its resident set (VmRSS) as the baseline, resets the kernel's high-water mark (writing 5 to
/proc/self/clear_refs), loads the artifact, runs `runs` inferences on the given batch, and reads the high-water
mark (VmHWM): memory = peak - baseline. A fresh process matters: in a process that already loaded other
models (the bench stage loads three, the gate two), resident memory freed or shared by earlier loads decides
the difference, which once gave 11.9 MB, 75 MB and 2.0 MB for the same IR. Where the high-water mark cannot be
reset (no /proc: macOS), the peak is getrusage's lifetime maximum, read before and after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MEMORY_METHOD = ("peak resident memory the runtime adds to load and run the model: measured in a fresh child "
                 "process, high-water mark (VmHWM) after loading and {runs} inferences of one batch minus the "
                 "resident memory after importing the runtime (VmRSS)")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far, in bytes.

    `resource.getrusage(RUSAGE_SELF).ru_maxrss` is in kilobytes on Linux and in bytes on macOS. It is a high-water
    mark for the whole process lifetime (it never goes down), so measure in a fresh process to attribute it
    to one model. Returns 0 where `resource` is unavailable (Windows).
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return 0
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss) if sys.platform == "darwin" else int(maxrss) * 1024


def current_rss_bytes() -> int | None:
    """Current resident set size in bytes from /proc/self/statm (Linux only); None elsewhere."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            resident_pages = int(fh.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def model_size_bytes(paths: Path | str | Iterable[Path | str]) -> int:
    """Total size on disk of the artifact's files (e.g. IR .xml + .bin, ONNX + external data).

    A directory counts every regular file beneath it. A missing path raises FileNotFoundError.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    total = 0
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise FileNotFoundError(f"artifact file not found: {p}")
        files = [f for f in p.rglob("*") if f.is_file()] if p.is_dir() else [p]
        for f in files:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                total += f.stat().st_size
    return total


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak() -> bool:
    """Reset this process's resident high-water mark to its current RSS (Linux >= 4.0); False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


def measure_memory(path: Path, runtime: str, settings: Any, batch: Any, runs: int = 10,
                   expected_sha256: str | None = None, timeout_s: float = 600.0) -> dict[str, Any]:
    """The memory of one artifact (see the module docstring), in a fresh child process: `memory_bytes`, the
    child's `baseline_rss_bytes` and `peak_rss_bytes`, and the method text. `settings` is a RuntimeSettings;
    `batch` the input array the inferences run on. A child that fails is an internal error (RuntimeError):
    the caller has already loaded and run the same artifact in its own process."""
    import dataclasses

    import numpy as np

    import edgekd

    with tempfile.TemporaryDirectory(prefix="edgekd-mem-") as tmp:
        request = Path(tmp) / "request.json"
        np.save(Path(tmp) / "batch.npy", np.ascontiguousarray(batch, dtype=np.float32))
        request.write_text(json.dumps({
            "path": str(Path(path).resolve()), "runtime": runtime, "runs": runs, "expected_sha256": expected_sha256,
            "settings": dataclasses.asdict(settings), "batch": str(Path(tmp) / "batch.npy"),
            "result": str(Path(tmp) / "result.json")}))
        env = dict(os.environ)
        root = str(Path(edgekd.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        proc = subprocess.run([sys.executable, "-m", "edgekd.runtimes.memory", str(request)], env=env,
                              capture_output=True, text=True, timeout=timeout_s, check=False)
        result = Path(tmp) / "result.json"
        if proc.returncode != 0 or not result.is_file():
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"memory measurement of {Path(path).name} failed in its child process "
                               f"(exit {proc.returncode}): {tail}")
        out = json.loads(result.read_text())
    return {**out, "method": MEMORY_METHOD.format(runs=runs)}


def _child(request_path: str) -> None:
    """The child of `measure_memory`: baseline after importing the runtime, peak after load + inferences."""
    import importlib

    import numpy as np

    from edgekd.runtimes import RuntimeSettings, get_runtime
    from edgekd.runtimes.base import check_sha256

    req = json.loads(Path(request_path).read_text())
    x = np.load(req["batch"])
    rt = get_runtime(req["runtime"])
    importlib.import_module(rt.library)
    check_sha256(Path(req["path"]), req["expected_sha256"])  # before the baseline: the hash's buffer is not the model's
    baseline = current_rss_bytes() or 0
    exact = _reset_peak()
    before = peak_rss_bytes()
    session = rt.load(Path(req["path"]), RuntimeSettings(**req["settings"]))
    for _ in range(req["runs"]):
        session.infer(x)
    if exact:
        peak = _status_kb("VmHWM") or 0
        added = peak - baseline
    else:  # lifetime maxima: what loading and running raised the peak by
        peak = peak_rss_bytes()
        added = peak - before
    Path(req["result"]).write_text(json.dumps({"memory_bytes": max(0, added), "baseline_rss_bytes": baseline,
                                               "peak_rss_bytes": peak, "peak_reset": exact, "runs": req["runs"]}))


if __name__ == "__main__":
    _child(sys.argv[1])
