"""One writer per run directory, a stale lock taken over, durable publishing, leftovers of killed writers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edgekd.errors import UsageError
from edgekd.fsio import publish, remove_dead_leftovers, write_atomic
from edgekd.rundir import LOCK_NAME, OWNER_NAME, RunDirLock, check_writable, keep_earlier_report

ROOT = Path(__file__).resolve().parents[1]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _holder(run_dir: Path, seconds: float) -> subprocess.Popen:
    """Another process that takes the run directory's lock, says so, holds it `seconds` and exits."""
    code = textwrap.dedent(f"""
        import sys, time
        from edgekd.rundir import RunDirLock
        with RunDirLock({str(run_dir)!r}):
            print("locked", flush=True)
            time.sleep({seconds})
            print(time.time(), flush=True)  # the last moment it surely holds the lock
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_gets_one_line_naming_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    holder = _holder(run_dir, 30)
    try:
        owner = json.loads((run_dir / OWNER_NAME).read_text())
        assert owner["pid"] == holder.pid and owner["host"] == socket.gethostname() and owner["command"]
        with pytest.raises(UsageError) as exc:
            RunDirLock(run_dir).acquire()
        msg = str(exc.value)
        assert f"PID {holder.pid}" in msg and "--wait" in msg and "\n" not in msg
        with pytest.raises(UsageError, match=f"PID {holder.pid}"):
            RunDirLock(run_dir).check_free()
    finally:
        holder.kill()
        holder.wait()


def test_wait_queues_behind_the_holder(tmp_path, capfd):
    run_dir = tmp_path / "run"
    holder = _holder(run_dir, 1.5)
    with RunDirLock(run_dir, wait=True):
        taken = time.time()
        assert taken > float(holder.stdout.readline()), "the lock was taken while its holder still held it"
        assert json.loads((run_dir / OWNER_NAME).read_text())["pid"] == os.getpid()
    holder.wait()
    err = capfd.readouterr().err
    assert f"waiting for PID {holder.pid}" in err
    assert "stale" not in err  # the holder released it cleanly
    assert not (run_dir / OWNER_NAME).exists() and (run_dir / LOCK_NAME).exists()


def test_stale_lock_of_a_dead_process_is_taken_over_with_one_warning(tmp_path, capfd):
    run_dir = tmp_path / "run"
    holder = _holder(run_dir, 60)
    holder.kill()  # SIGKILL: the kernel drops the flock, the sidecar naming the holder stays
    holder.wait()
    assert json.loads((run_dir / OWNER_NAME).read_text())["pid"] == holder.pid
    RunDirLock(run_dir).check_free()
    with RunDirLock(run_dir):
        pass
    warnings = [line for line in capfd.readouterr().err.splitlines() if line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: taking over the stale lock")
    assert f"PID {holder.pid}" in warnings[0] and "no longer running" in warnings[0]


def test_lock_is_not_created_before_it_is_taken(tmp_path):
    run_dir = tmp_path / "new" / "run"
    RunDirLock(run_dir).check_free()
    assert not (tmp_path / "new").exists()


def test_run_dir_that_is_a_file_or_under_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UsageError, match="is a file, not a directory"):
        check_writable(f)
    with pytest.raises(UsageError, match="which is a file"):
        check_writable(f / "run")
    assert f.read_text() == "x"


def test_publish_replaces_a_folder_and_write_atomic_leaves_no_temporary(tmp_path):
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "a").write_text("new")
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "a").write_text("old")
    publish(tmp_path / "new", tmp_path / "final")
    assert (tmp_path / "final" / "a").read_text() == "new" and not (tmp_path / "new").exists()
    write_atomic(tmp_path / "r.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final", "r.json"]


def test_leftovers_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead, live = _dead_pid(), os.getppid()
    (tmp_path / f".bundle.tmp-{dead}" / "models").mkdir(parents=True)
    (tmp_path / f".bundle.tar.gz.tmp-{dead}").write_bytes(b"partial")
    (tmp_path / f".bundle.tmp-{live}").mkdir()
    (tmp_path / ".bundle-notes.tmp-x").write_text("not ours")
    removed = remove_dead_leftovers(tmp_path, "bundle")
    assert [p.name for p in removed] == [f".bundle.tmp-{dead}"]
    assert remove_dead_leftovers(tmp_path)[0].name == f".bundle.tar.gz.tmp-{dead}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".bundle-notes.tmp-x", f".bundle.tmp-{live}"]


def _report(run_dir: Path, final_id: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "report.json").write_text(json.dumps({"stages": [{"stage": "bench", "id": final_id}]}))
    (run_dir / "report.md").write_text(final_id)
    (run_dir / "bundle").mkdir(exist_ok=True)
    (run_dir / "bundle" / "bundle.json").write_text(final_id)


def test_a_variant_keeps_the_earlier_report_in_history(tmp_path):
    run_dir = tmp_path / "run"
    _report(run_dir, "aaaaaaaaaaaa")
    assert keep_earlier_report(run_dir, "aaaaaaaaaaaa") is None  # same stages: replaced in place
    moved = keep_earlier_report(run_dir, "bbbbbbbbbbbb")
    assert moved.parent == run_dir / "history" and moved.name.endswith("-aaaaaaaaaaaa")
    assert (moved / "report.md").read_text() == "aaaaaaaaaaaa"
    assert (moved / "bundle" / "bundle.json").read_text() == "aaaaaaaaaaaa"
    assert not (run_dir / "report.json").exists() and not (run_dir / "bundle").exists()
    time.sleep(0.01)
    _report(run_dir, "bbbbbbbbbbbb")
    again = keep_earlier_report(run_dir, "cccccccccccc")
    assert sorted(p.name.split("-", 1)[1] for p in (run_dir / "history").iterdir()) == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    assert again != moved
