"""What runs inside a batch worker: screen one study, publish its folder, return a record.

The model is loaded once per worker process and kept in a module-level cache (the same
code path serves local process pools and dask workers). The functions that screen and
load are named by "module:function" strings in the config, so any executor can import them
and tests can inject a stand-in without touching the pipeline.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import socket
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from screener.atomic import write_json_atomic
from screener.batching.atomic import publish_dir
from screener.batching.tasks import BatchTask

DECISIONS = ("negative", "flagged", "indeterminate")

_MODELS: dict[tuple[str, str, str], Any] = {}
_LOCK = threading.Lock()
_LOADS: dict[tuple[str, str, str], int] = {}


@dataclass(frozen=True)
class WorkerSettings:
    """Everything a worker needs besides the task (picklable, sent with each task)."""

    outdir: str
    config: dict[str, Any]
    device: str
    screen_function: str
    model_loader: str
    threads_per_worker: int
    force: bool = False
    study_time_limit_s: float = 0.0  # 0 = no limit (screener.hardening.timelimit)


def resolve(spec: str) -> Any:
    """Import "package.module:attribute"."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"expected 'module:function', got {spec!r}")
    return getattr(importlib.import_module(module), attr)


def init_worker(threads: int) -> None:
    """Process-pool initializer: cap math-library threads before torch is imported."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


def _config_digest(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def get_model(settings: WorkerSettings) -> Any:
    """The model for these settings, loaded on first use in this process and then reused."""
    key = (settings.model_loader, settings.device, _config_digest(settings.config))
    with _LOCK:
        if key not in _MODELS:
            loader = resolve(settings.model_loader)
            _MODELS[key] = loader(settings.config, settings.device)
            _LOADS[key] = _LOADS.get(key, 0) + 1
            if "torch" in sys.modules:
                sys.modules["torch"].set_num_threads(max(1, settings.threads_per_worker))
        return _MODELS[key]


def read_complete_report(study_dir: Path) -> dict[str, Any] | None:
    """The study's report.json if it is complete (parses, has a known decision), else None."""
    try:
        report = json.loads((study_dir / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or report.get("decision") not in DECISIONS:
        return None
    return report


def _where(exc: BaseException) -> str:
    """Innermost traceback frame of project code: file:line in function."""
    frames = traceback.extract_tb(exc.__traceback__)
    # Innermost frame of our code (not the standard library or site-packages).
    ours = [f for f in frames if "site-packages" not in f.filename
            and "/lib/python" not in f.filename.replace("\\", "/")] or frames
    if not ours:
        return ""
    f = ours[-1]
    return f"{Path(f.filename).name}:{f.lineno} in {f.name}"


def error_record(stage: str, exc: BaseException, scrub: tuple[str, ...] = ()) -> dict[str, Any]:
    """What failed and where, with known identifiers (accession ...) scrubbed from the text."""
    message = str(exc)
    for s in scrub:
        if s:
            message = message.replace(s, "<redacted>")
    return {"stage": stage, "error": type(exc).__name__, "message": message[:500],
            "where": _where(exc)}


def _worker_info(t0: float, settings: WorkerSettings) -> dict[str, Any]:
    """Where the task ran and how often this process has loaded this model (1 = reused)."""
    key = (settings.model_loader, settings.device, _config_digest(settings.config))
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "model_loads_in_process": _LOADS.get(key, 0), "seconds": round(time.time() - t0, 3)}


def run_task(task: BatchTask, settings: WorkerSettings) -> dict[str, Any]:
    """Screen one study into a staging folder and rename it into OUTDIR/<key>.

    Never raises: any failure becomes a record with status "failed" and an error entry.

    Returns:
        {"key", "status": "done"|"skipped"|"failed", "report": dict|None, "error": dict|None,
         "worker": {...}}.
    """
    t0 = time.time()
    outdir = Path(settings.outdir)
    final = outdir / task.key
    scrub = (task.study.accession_number,) if task.study else ()
    if task.discovery_error is not None or task.study is None:
        return {"key": task.key, "status": "failed", "report": None,
                "error": task.discovery_error, "worker": _worker_info(t0, settings)}
    if not settings.force:
        done = read_complete_report(final)
        if done is not None:
            return {"key": task.key, "status": "skipped", "report": done, "error": None,
                    "worker": _worker_info(t0, settings)}
    stage = "load_model"
    staging = outdir / ".staging" / f"{task.key}-{uuid.uuid4().hex[:8]}"
    try:
        model = get_model(settings)
        stage = "screen"
        staging.mkdir(parents=True)
        screen = resolve(settings.screen_function)
        from screener.hardening.timelimit import time_limit

        with time_limit(settings.study_time_limit_s, f"study {task.uid_hash}"):
            screen(task.study, staging, config=settings.config, model=model)
        stage = "publish"
        produced = [p for p in staging.iterdir() if p.is_dir()]
        if len(produced) != 1:
            raise RuntimeError(f"screen wrote {len(produced)} study folders, expected 1")
        report = read_complete_report(produced[0])
        if report is None:
            raise RuntimeError("screen left no complete report.json")
        publish_dir(produced[0], final, outdir / ".trash")
        (outdir / "errors" / f"{task.key}.json").unlink(missing_ok=True)
        return {"key": task.key, "status": "done", "report": report, "error": None,
                "worker": _worker_info(t0, settings)}
    except Exception as exc:  # noqa: BLE001 - one failing study never stops the batch
        err = error_record(stage, exc, scrub)
        try:
            write_json_atomic(outdir / "errors" / f"{task.key}.json",
                              {"key": task.key, "study_uid_hash": task.uid_hash, **err})
        except OSError:
            pass
        return {"key": task.key, "status": "failed", "report": None, "error": err,
                "worker": _worker_info(t0, settings)}
    finally:
        if staging.exists():
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
