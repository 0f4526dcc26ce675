"""The launcher's SIGTERM cannot silence a failing rank (fast, no torchrun: in the default run).

Under torchrun, a rank that dies makes the launcher SIGTERM the others. A rank that already saw the dead peer
is unwinding towards its one-line "rerun ... to resume" message; before this was fixed, leaving the handler's
scope restored the default SIGTERM action, and a SIGTERM landing in that window killed the rank silently
(CI saw exit -15 and no message). This drives the race deterministically in a child process."""
from __future__ import annotations

import subprocess
import sys
import textwrap

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
