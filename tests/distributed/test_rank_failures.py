"""How a rank fails under torchrun: one line, never silence, never a hang (fast, no torchrun: in the default run).

- A rank that dies makes the launcher SIGTERM the others. A rank that already saw the dead peer is unwinding
  towards its one-line "rerun ... to resume" message; before the fix, leaving the handler's scope restored the
  default SIGTERM action, and a SIGTERM landing in that window killed the rank silently (CI saw exit -15 and no
  message). The first test drives that race deterministically in a child process.
- A peer lost in the pipeline's own collectives is one line, not an internal error.
- A child forked by a library during a stage dies on SIGTERM."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch.distributed

from edgekd.errors import StageFailed
from edgekd.pipeline import _peer_failures

CHILD = textwrap.dedent("""
    import os, signal, sys, time
    from types import SimpleNamespace
    from edgekd.errors import StageFailed
    from edgekd.pipeline import _stop_cleanly_on_sigterm

    ctx = SimpleNamespace(distributed=True, rank=0)
    try:  # a SIGTERM while the pipeline runs becomes the one-line error
        with _stop_cleanly_on_sigterm(ctx):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        print("not stopped")
    except StageFailed as exc:
        print("stopped:", exc)
    try:  # the rank is failing on its own (a dead peer) when the launcher's SIGTERM lands
        with _stop_cleanly_on_sigterm(ctx):
            raise RuntimeError("connection closed by peer")
    except RuntimeError:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
        print("still alive to say why")
""")


def test_a_failing_rank_outlives_the_launchers_sigterm_and_says_why():
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("stopped: rank 0 stopped by the launcher")
    assert "rerun the same command with the same number of processes to resume" in lines[0]
    assert lines[1] == "still alive to say why"


def test_outside_torchrun_sigterm_keeps_its_default_action():
    code = textwrap.dedent("""
        import os, signal
        from types import SimpleNamespace
        from edgekd.pipeline import _stop_cleanly_on_sigterm
        with _stop_cleanly_on_sigterm(SimpleNamespace(distributed=False, rank=0)):
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        os.kill(os.getpid(), signal.SIGTERM)
        print("survived")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -15 and "survived" not in proc.stdout


def test_a_peer_lost_in_the_pipelines_own_collectives_is_one_line_not_an_internal_error():
    """Rank 1 waiting in the pipeline's barrier while rank 0 died or hung used to end in `internal error:
    RuntimeError: ... Timed out waiting 15000ms for recv ... please report it` (exit 4; RESULTS, session 7)."""
    ctx = SimpleNamespace(distributed=True, rank=1, timeout_s=15.0)
    with pytest.raises(StageFailed) as exc:
        with _peer_failures(ctx, "stopped between stages", "finished stages are kept"):
            raise torch.distributed.DistError("[gloo/transport/tcp/pair.cc:561] Connection closed by peer\nmore")
    msg = str(exc.value)
    assert msg.startswith("stopped between stages on rank 1: another process died, was killed or hung for over "
                          "15s (EDGEKD_DIST_TIMEOUT_S) [[gloo/transport/tcp/pair.cc:561] Connection closed by peer]")
    assert msg.endswith("finished stages are kept: rerun the same command with the same number of processes to "
                        "resume") and "\n" not in msg
    with pytest.raises(ValueError):  # anything else passes unchanged
        with _peer_failures(ctx, "stopped between stages", "finished stages are kept"):
            raise ValueError("a bug")
    with pytest.raises(torch.distributed.DistError):  # and nothing changes in a single process
        with _peer_failures(SimpleNamespace(distributed=False, rank=0, timeout_s=15.0), "x", "y"):
            raise torch.distributed.DistError("Connection closed by peer")


FORK_CHILD = textwrap.dedent("""
    import multiprocessing, signal, sys
    from types import SimpleNamespace
    from edgekd.pipeline import _stop_cleanly_on_sigterm

    def child():
        sys.exit(0 if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL else 3)

    with _stop_cleanly_on_sigterm(SimpleNamespace(distributed=True, rank=0)):
        p = multiprocessing.get_context("fork").Process(target=child)
        p.start()
        p.join(60)
    print("child exit", p.exitcode)
""")


def test_a_child_forked_by_a_library_during_a_stage_dies_on_sigterm():
    """OpenVINO's telemetry forks a sender; under torchrun it inherited the rank's Python SIGTERM handler, hung in
    getaddrinfo (a lock held by another thread at fork time), could not run that handler, ignored its parent's
    terminate(), and rank 0 waited for it forever at exit. Forked children get the default action back."""
    proc = subprocess.run([sys.executable, "-c", FORK_CHILD], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "child exit 0"
