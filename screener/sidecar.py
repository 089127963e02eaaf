"""A helper process for the `screen` command's pure-Python work, forked before torch is imported.

Reading DICOM headers (`find_studies`) and building DICOM SR/SEG with highdicom are
single-threaded Python; importing torch and MONAI and writing the maps and the overlay are too.
On a 2-core machine they can run side by side: the helper reads the study and warms highdicom
while the main process imports torch and MONAI, and later writes SR/SEG while the main process
writes the maps and the picture.

The helper is forked (Linux) before torch is loaded, so no thread pool is copied into it, and it
never imports torch. Where fork is unavailable, torch is already imported, or the helper dies,
every job runs in the calling process instead: same function, same result, only slower.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Job(Generic[T]):
    """A submitted call; `result()` runs it here when the helper could not."""

    def __init__(self, future: Future | None, fn: Callable[..., T], args: tuple[Any, ...]) -> None:
        self._future, self._fn, self._args = future, fn, args

    def result(self) -> T:
        if self._future is not None:
            try:
                return self._future.result()
            except BrokenProcessPool:
                log.warning("helper process ended unexpectedly; %s runs in the main process",
                            getattr(self._fn, "__name__", "job"))
        return self._fn(*self._args)

    def settle(self) -> None:
        """Never run a job not yet started; let a started one finish (errors ignored), so
        nothing it writes lands after this returns."""
        if self._future is not None and not self._future.cancel():
            try:
                self._future.result()
            except Exception:
                pass
        self._future, self._fn = None, _nothing


def _nothing(*args: Any) -> None:
    return None


class Sidecar:
    """One helper process (or none: then jobs run in the caller when their result is asked)."""

    def __init__(self, enabled: bool = True) -> None:
        self._pool: ProcessPoolExecutor | None = None
        if enabled and "torch" not in sys.modules and "fork" in mp.get_all_start_methods():
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("fork"),
                                             initializer=_end_with_parent, initargs=(os.getpid(),))
            log.debug("helper process for headers and DICOM outputs")

    @property
    def forked(self) -> bool:
        return self._pool is not None

    def submit(self, fn: Callable[..., T], *args: Any) -> Job[T]:
        """Start fn(*args) in the helper (picklable arguments and result)."""
        future = None
        if self._pool is not None:
            try:
                future = self._pool.submit(fn, *args)
            except (BrokenProcessPool, RuntimeError):
                self._pool = None
        return Job(future, fn, args)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "Sidecar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _end_with_parent(parent: int) -> None:
    """In the helper: exit when the main process is gone (killed, say, by SIGTERM or SIGKILL,
    when nothing tells the helper to stop), instead of waiting for work forever."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


def find_studies_job(inputs: list[str], config: dict[str, Any]) -> tuple[Any, list[str]]:
    """find_studies, plus the folders it extracted archives into (the caller removes them at
    its exit: a helper process does not run exit handlers)."""
    from screener.io import archive, find_studies

    found = find_studies(inputs, config)
    return found, archive.extracted_dirs()


def warm_dicom_writers() -> None:
    """Import highdicom and parse the standard's tables it reads at first use (~0.5 s)."""
    import importlib

    importlib.import_module("screener.report.dicom")
    try:  # highdicom's private cache: only speed depends on it, never a result
        from highdicom import _standard_utils as su

        su.get_sop_class_iod_map()
        su.get_iod_module_map()
        su.get_module_attribute_map()
    except (ImportError, AttributeError):
        pass
