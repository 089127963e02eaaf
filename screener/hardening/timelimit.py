"""A wall-clock limit for one study's screening, in whatever thread it runs.

`signal.alarm` works only in a process's main thread; batch workers run studies in the main
thread of a pool process, in a dask worker thread, or inline. `time_limit` therefore uses a
watchdog timer that raises an exception asynchronously in the screening thread
(PyThreadState_SetAsyncExc). The exception derives from BaseException, so the pipeline's own
`except Exception` handlers (which turn failures into indeterminate reports) cannot swallow
it; on leaving the block it becomes a `StudyTimeLimitError` (an ordinary exception the batch
records as a failed study).

An asynchronous exception is delivered between Python bytecodes: a single C call that never
returns (a hung decoder) is not interrupted by it. For that case, in a child process (a pool or
dask worker) the watchdog ends the process after a grace period; the executor then records the
study as failed (local pool: retried once, then `worker_died`; dask: `KilledWorker`).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


class StudyTimeLimitError(TimeoutError):
    """A study's screening ran past its time limit."""


class _Expired(BaseException):
    """Raised asynchronously in the screening thread; turned into StudyTimeLimitError."""


def _raise_in(thread_id: int) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(_Expired))


@contextmanager
def time_limit(seconds: float | None, what: str = "screening", *,
               hard_kill_after_s: float | None = -1.0) -> Iterator[None]:
    """Raise StudyTimeLimitError in this thread if the block runs longer than `seconds`.

    Args:
        seconds: the limit; None or <= 0 means no limit.
        what: named in the error message.
        hard_kill_after_s: if the block is still running this long after the limit (stuck in C
            code), end the process with exit code 70 - only in a child process (pool or dask
            worker), never in the main process. Negative (default): as long as the limit
            itself; None disables it.

    Raises:
        StudyTimeLimitError: the block did not finish in time.
    """
    if not seconds or seconds <= 0:
        yield
        return
    lock = threading.Lock()
    state = {"done": False, "fired": False}
    target = threading.get_ident()

    def fire() -> None:
        with lock:
            if state["done"]:
                return
            state["fired"] = True
            _raise_in(target)
        log.warning("%s exceeded its time limit of %.0f s; interrupting", what, seconds)

    def hard_kill() -> None:
        with lock:
            if state["done"]:
                return
        log.error("%s still running %.0f s past its time limit (stuck outside Python); "
                  "ending this worker process", what, hard_kill_after_s)
        logging.shutdown()
        os._exit(70)

    if hard_kill_after_s is not None and hard_kill_after_s < 0:
        hard_kill_after_s = seconds
    timers = [threading.Timer(seconds, fire)]
    if hard_kill_after_s is not None and multiprocessing.parent_process() is not None:
        timers.append(threading.Timer(seconds + hard_kill_after_s, hard_kill))
    for t in timers:
        t.daemon = True
        t.start()
    expired = False
    try:
        try:
            yield
        finally:
            # A pending asynchronous exception may fire anywhere up to `done`; catch it here.
            try:
                with lock:
                    state["done"] = True
                for t in timers:
                    t.cancel()
            except _Expired:
                expired = True
    except _Expired:
        expired = True
    if expired or state["fired"]:
        raise StudyTimeLimitError(f"{what} exceeded the time limit of {seconds:g} s")
