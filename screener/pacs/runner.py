"""Screens spooled studies in a child process, with a per-study time limit.

The child loads the model once and screens one study per request. A study that runs past the
time limit, or a child that dies (segfault in a decoder, out of memory), costs only that study:
the child is killed and restarted, and the study gets an `indeterminate` report written here
(fail closed), never a `negative` one. The service process itself never imports torch.
"""

from __future__ import annotations

import importlib
import json
import logging
import multiprocessing as mp
import os
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from screener.pacs.settings import PipelineSettings
from screener.pacs.spool import durable_write, short_hash

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScreenResult:
    """What one screening produced: the report and the folder its relative outputs live in."""

    report: dict[str, Any]
    report_dir: Path
    error: str = ""  # non-empty when the pipeline did not assess the study (fail closed)

    def write_fallback(self) -> None:
        """Write the service's fail-closed report.json (only for `error` results)."""
        if self.error:
            durable_write(self.report_dir / "report.json",
                          json.dumps(self.report, indent=2).encode("utf-8"))


def _resolve(spec: str) -> Callable[..., Any]:
    module_name, _, func_name = spec.partition(":")
    return getattr(importlib.import_module(module_name), func_name)


def _study_dir_name(screen_spec: str, study: Any) -> str:
    """The pipeline's folder name for a study (its `study_dir_name`), else a hash of the UID."""
    try:
        module = importlib.import_module(screen_spec.partition(":")[0])
        namer = getattr(module, "study_dir_name", None)
        if namer is not None:
            return str(namer(study))
    except Exception:  # noqa: BLE001 - the pipeline module may not import in this process
        pass
    return short_hash(study.study_instance_uid)


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this process when the service dies (even by SIGKILL), so an
    orphaned screening never finishes behind the back of a restarted service."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the EOF check below still ends the loop
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _child_main(conn: Any, pipeline: dict[str, Any], config: dict[str, Any],
                parent_pid: int) -> None:
    """Child process loop: load the model once, then answer screening requests."""
    _die_with_parent(parent_pid)
    threads = str(pipeline.get("torch_threads", 1))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = threads
    spec = PipelineSettings(**pipeline)
    find_studies = _resolve(spec.find_studies)
    screen_study = _resolve(spec.screen_study)
    model = None
    if spec.load_model:
        model = _resolve(spec.load_model)(config, device=spec.device)
    conn.send(("ready", None))
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request is None:
            return
        study_uid, study_dir, results_dir = request
        try:
            found = find_studies([study_dir], config)
            matches = [s for s in found.studies if s.study_instance_uid == study_uid]
            if not matches:
                conn.send(("nostudy", f"no readable study among the received instances "
                                      f"({len(found.studies)} other, {len(found.errors)} errors)"))
                continue
            study = matches[0]
            report = screen_study(study, Path(results_dir), config=config, model=model)
            name = _study_dir_name(spec.screen_study, study)
            conn.send(("ok", (json.loads(json.dumps(report, default=str)), name)))
        except Exception as exc:  # noqa: BLE001 - any failure becomes an indeterminate report
            conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"))


def fail_closed_report(study_uid: str, reasons: list[str]) -> dict[str, Any]:
    """The report the service writes when the pipeline could not assess a study."""
    return {
        "schema_version": "1",
        "study": {"study_instance_uid": study_uid, "accession_number": "", "source": "serve"},
        "decision": "indeterminate",
        "abnormality_score": None,
        "confidence": None,
        "reasons": reasons,
        "series": [],
        "findings": [],
        "resolution_limits": None,
        "outputs": {"anomaly_map": None, "sr": None, "seg": None, "overlay": None},
    }


class ScreeningRunner:
    """A restartable child process that screens studies one at a time.

    Args:
        pipeline: where the screening functions come from.
        config: the full merged config, handed to the pipeline.
        time_limit_s: per-study wall-clock limit.
        startup_limit_s: time allowed for the child to import and load the model.
    """

    def __init__(self, pipeline: PipelineSettings, config: dict[str, Any], time_limit_s: float,
                 startup_limit_s: float = 300.0) -> None:
        self.pipeline = pipeline
        self.config = config
        self.time_limit_s = time_limit_s
        self.startup_limit_s = startup_limit_s
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._conn: Any = None

    def _start(self) -> str:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_child_main, args=(child, asdict(self.pipeline), self.config, os.getpid()),
                                 name="screener-screening", daemon=True)
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        if not parent.poll(self.startup_limit_s):
            self.stop()
            return f"screening process did not start within {self.startup_limit_s:.0f} s"
        try:
            kind, payload = parent.recv()
        except (EOFError, OSError):
            self.stop()
            return "screening process failed to start (model or pipeline could not be loaded)"
        return "" if kind == "ready" else str(payload)

    def stop(self) -> None:
        """Kill the child (used on timeout and shutdown)."""
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def kill(self) -> None:
        """Kill the child from another thread; the screening thread then sees it die."""
        proc = self._proc
        if proc is not None and proc.is_alive():
            proc.kill()

    def screen(self, study_uid: str, study_dir: Path, results_dir: Path) -> ScreenResult:
        """Screen the study spooled in `study_dir`; always returns a report (fail closed)."""
        from screener.types import Study

        key = short_hash(study_uid)
        fallback_dir = results_dir / _study_dir_name(self.pipeline.screen_study, Study(study_uid))
        if self._proc is None or not self._proc.is_alive():
            self.stop()
            problem = self._start()
            if problem:
                return self._fail(study_uid, fallback_dir, f"not assessed: {problem}")
        self._conn.send((study_uid, str(study_dir), str(results_dir)))
        if not self._conn.poll(self.time_limit_s):
            log.warning("study %s exceeded the time limit of %.0f s; screening process restarted",
                        key, self.time_limit_s)
            self.stop()
            return self._fail(study_uid, fallback_dir,
                              f"not assessed: screening exceeded the time limit of "
                              f"{self.time_limit_s:.0f} s")
        try:
            kind, payload = self._conn.recv()
        except (EOFError, OSError):
            self.stop()
            return self._fail(study_uid, fallback_dir,
                              "not assessed: the screening process died on this study")
        if kind == "ok":
            report, name = payload
            return ScreenResult(report, results_dir / name)
        if kind == "error":
            # Only the exception type: messages may quote header values.
            log.error("screening failed for study %s: %s", key, payload.split(":", 1)[0])
            return self._fail(study_uid, fallback_dir, "not assessed: internal error while screening")
        return self._fail(study_uid, fallback_dir, f"not assessed: {payload}")

    def _fail(self, study_uid: str, report_dir: Path, reason: str) -> ScreenResult:
        return ScreenResult(fail_closed_report(study_uid, [reason]), report_dir, error=reason)

    def __enter__(self) -> ScreeningRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_ready(runner: ScreeningRunner) -> float:
    """Start the child ahead of the first study (so model loading is not charged to it)."""
    t0 = time.monotonic()
    if runner._proc is None:
        problem = runner._start()
        if problem:
            log.error("screening process: %s", problem)
    return time.monotonic() - t0
