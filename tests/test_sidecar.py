"""The `screen` command's helper process: jobs run there when it lives, here when it does not."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from screener.sidecar import Sidecar


def test_without_helper_jobs_run_here_when_asked():
    calls = []
    with Sidecar(enabled=False) as side:
        assert not side.forked
        job = side.submit(calls.append, 1)
        assert calls == []  # nothing runs before its result is asked for
        assert job.result() is None and calls == [1]
        never = side.submit(calls.append, 2)
        never.settle()  # a job not started is never run
        assert never.result() is None and calls == [1]


def test_no_helper_once_torch_is_loaded():
    import importlib

    importlib.import_module("torch")

    with Sidecar() as side:
        assert not side.forked


def test_helper_runs_jobs_and_its_death_falls_back_here():
    # In a fresh interpreter: the helper is forked only where torch is not loaded yet.
    script = textwrap.dedent("""
        import os, signal, sys
        from screener.sidecar import Sidecar
        with Sidecar() as side:
            assert side.forked
            assert "torch" not in sys.modules
            helper = side.submit(os.getpid).result()
            assert helper != os.getpid()
            os.kill(helper, signal.SIGKILL)
            # the pool notices the death; the job then runs here, with the same result type
            assert side.submit(os.getpid).result() == os.getpid()
            assert not side.forked or side.submit(os.getpid).result() == os.getpid()
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_helper_ends_when_the_main_process_is_killed():
    import signal
    import time

    script = textwrap.dedent("""
        import os, time
        from screener.sidecar import Sidecar
        side = Sidecar()
        print(side.submit(os.getpid).result(), flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    helper = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)  # no exit handler, no pool shutdown runs
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(helper, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{helper}/stat") as fh:  # reaped by init as a zombie at worst
            if fh.read().split(")")[-1].split()[0] == "Z":
                return
        time.sleep(0.2)
    raise AssertionError(f"helper {helper} still running after its parent was killed")
