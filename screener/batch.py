"""`screener batch`: screen many studies, resumable and crash-safe, locally or on Dask.

One study per task; each worker loads the model once. A study whose OUTDIR/<study>/report.json
is complete is skipped on rerun (`--force` redoes it). Study folders are built under
OUTDIR/.staging and renamed into place, so a killed run leaves no half-written study. A study
that fails gets OUTDIR/errors/<study>.json (what failed, where) and the batch goes on. The run
ends with OUTDIR/batch_summary.json, worklist.csv and worklist.json. Logs and progress carry
study-UID hashes only, never patient identifiers.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from screener.atomic import TMP_MARK, write_json_atomic
from screener.batching.tasks import BatchTask, collect_tasks
from screener.batching.worker import WorkerSettings, read_complete_report, resolve
from screener.config import load_config, section

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchConfig:
    """The `batch:` section of the config."""

    # "module:function" of the callables a worker uses (tests point these at stand-ins).
    screen_function: str = "screener.pipeline:screen_study"
    model_loader: str = "screener.pipeline:load_model"
    study_dir_name: str = "screener.pipeline:study_dir_name"
    discover_function: str = "screener.io:find_studies"
    threads_per_worker: int = 1      # torch / BLAS threads in each worker process
    start_method: str = "spawn"      # local pool; spawn avoids forking a process holding torch
    dask_retries: int = 1            # dask re-runs a task once if its worker dies
    dask_connect_timeout_s: float = 30.0
    progress: bool = True            # tqdm bar on stderr (rate and ETA)
    study_time_limit_s: float = 900.0  # per-study screening limit; past it: failed (0 = none)


@dataclass
class BatchResult:
    """Outcome of a batch: the summary written to disk and one record per task."""

    summary: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    tasks: dict[str, BatchTask] = field(default_factory=dict)


class OutputLockedError(RuntimeError):
    """Another batch is writing into the same OUTDIR."""


class IdentityMismatchError(RuntimeError):
    """OUTDIR holds results of another model, calibration or config."""


def _check_identity(outdir: Path, config: dict[str, Any], force: bool) -> None:
    """Refuse to resume into results made by something else; record the identity otherwise."""
    from screener.batching.identity import run_identity

    path = outdir / "batch_identity.json"
    current = run_identity(config)
    if path.exists() and not force:
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            previous = None
        if previous != current:
            changed = sorted(k for k in current if (previous or {}).get(k) != current[k])
            raise IdentityMismatchError(
                f"{outdir} holds results of another model/calibration/config (changed: "
                f"{', '.join(changed)}); use --force to redo them or a new output folder")
    write_json_atomic(path, current)


def _lock_outdir(outdir: Path) -> Any:
    import fcntl

    fh = open(outdir / ".batch.lock", "w")  # noqa: SIM115 - held for the run
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        fh.close()
        raise OutputLockedError(f"another batch is running on {outdir}") from exc
    return fh


def _clean_leftovers(outdir: Path) -> None:
    """Remove what a killed run may have left: staging and trash folders, temporary files."""
    for name in (".staging", ".trash"):
        shutil.rmtree(outdir / name, ignore_errors=True)
    for folder in (outdir, outdir / "errors"):
        if folder.is_dir():
            for p in folder.glob(f"*{TMP_MARK}*"):
                p.unlink(missing_ok=True)


def _enrich(record: dict[str, Any], task: BatchTask) -> dict[str, Any]:
    record["uid_hash"] = task.uid_hash
    record["case_id"] = task.case.study_id if task.case else None
    if task.study is not None:
        record.setdefault("study_instance_uid", task.study.study_instance_uid)
        record.setdefault("accession_number", task.study.accession_number)
    return record


def _outcome(record: dict[str, Any]) -> str:
    if record["status"] == "failed":
        return "failed"
    return str((record.get("report") or {}).get("decision", "failed"))


def run_batch(
    roots: Sequence[str | Path],
    outdir: str | Path,
    config: dict[str, Any],
    *,
    workers: int = 1,
    dask: str | None = None,
    scheduler: str | None = None,
    force: bool = False,
    device: str = "auto",
) -> BatchResult:
    """Screen every study under `roots` into `outdir`.

    Args:
        roots: DICOM trees, NIfTI study folders (or trees of them), manifest CSVs.
        outdir: output folder (created).
        config: full configuration.
        workers: local worker processes (0 = in this process); dask LocalCluster size.
        dask: "local" to start a dask LocalCluster on 127.0.0.1.
        scheduler: address of an existing dask scheduler (tcp://HOST:PORT).
        force: redo studies that already have a complete report.
        device: "auto" | "cpu" | "cuda", passed to the model loader.

    Returns:
        BatchResult with the summary (also written to OUTDIR/batch_summary.json).
    """
    from screener.worklist import order_rows, row_from_record, write_worklist

    cfg = section(config, "batch", BatchConfig)
    out = Path(outdir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock_outdir(out)
    t0 = time.time()
    try:
        _clean_leftovers(out)
        _check_identity(out, config, force)
        tasks, problems = collect_tasks(roots, config, find_studies=resolve(cfg.discover_function),
                                        dir_name=resolve(cfg.study_dir_name))
        by_key = {t.key: t for t in tasks}
        records: list[dict[str, Any]] = []
        todo: list[BatchTask] = []
        for t in tasks:
            if t.discovery_error is not None or t.study is None:
                # Never reached a worker: the inputs did not form a study.
                err = t.discovery_error or {"stage": "discover", "error": "InputError",
                                            "message": "no study", "where": ""}
                write_json_atomic(out / "errors" / f"{t.key}.json",
                                  {"key": t.key, "study_uid_hash": t.uid_hash, **err})
                records.append(_enrich({"key": t.key, "status": "failed", "report": None,
                                        "error": err, "worker": None}, t))
                continue
            done = None if force else read_complete_report(out / t.key)
            if done is not None:
                records.append(_enrich({"key": t.key, "status": "skipped", "report": done,
                                        "error": None, "worker": None}, t))
            else:
                todo.append(t)
        log.info("batch: %d studies found, %d already complete, %d to screen, %d discovery "
                 "problem(s)", len(tasks), len(records), len(todo), len(problems))
        settings = WorkerSettings(outdir=str(out), config=config, device=device,
                                  screen_function=cfg.screen_function,
                                  model_loader=cfg.model_loader,
                                  threads_per_worker=cfg.threads_per_worker, force=force,
                                  study_time_limit_s=cfg.study_time_limit_s)
        counts: Counter[str] = Counter(_outcome(r) for r in records)
        results = (_enrich(r, by_key[r["key"]])
                   for r in _execute(todo, settings, cfg, workers, dask, scheduler))
        records.extend(_progress(results, len(todo), counts, cfg.progress))
        rows = order_rows(row_from_record(r, out) for r in records)
        write_worklist(rows, out)
        summary = _summary(records, problems, len(todo), time.time() - t0,
                           executor=_executor_name(workers, dask, scheduler))
        write_json_atomic(out / "batch_summary.json", summary)
        return BatchResult(summary=summary, records=records, tasks=by_key)
    finally:
        lock.close()


def _executor_name(workers: int, dask: str | None, scheduler: str | None) -> str:
    if scheduler:
        return "dask (existing scheduler)"
    if dask:
        return f"dask LocalCluster x{workers}"
    return "in-process" if workers <= 0 else f"local processes x{workers}"


def _execute(todo: list[BatchTask], settings: WorkerSettings, cfg: BatchConfig, workers: int,
             dask: str | None, scheduler: str | None) -> Iterator[dict[str, Any]]:
    from screener.batching import executors

    if not todo:
        return iter(())
    if scheduler or dask:
        return executors.run_dask(todo, settings, scheduler=scheduler, n_workers=max(1, workers),
                                  retries=cfg.dask_retries,
                                  connect_timeout_s=cfg.dask_connect_timeout_s)
    if workers <= 0:
        return executors.run_inline(todo, settings)
    return executors.run_local(todo, settings, workers, start_method=cfg.start_method)


def _progress(records: Iterator[dict[str, Any]], total: int, counts: Counter[str],
              enabled: bool) -> Iterator[dict[str, Any]]:
    from tqdm import tqdm

    with tqdm(total=total, unit="study", desc="screening", disable=not enabled or total == 0,
              file=sys.stderr, dynamic_ncols=True) as bar:
        for rec in records:
            outcome = _outcome(rec)
            counts[outcome] += 1
            # Only the UID hash is logged: never names, IDs or accession numbers.
            log.info("study %s: %s%s", rec.get("uid_hash") or rec["key"][:12], outcome,
                     f" ({rec['error']['stage']}: {rec['error']['error']})" if rec.get("error")
                     else "")
            bar.set_postfix({k: counts[k] for k in ("flagged", "indeterminate", "negative",
                                                    "failed")}, refresh=False)
            bar.update(1)
            yield rec


def _summary(records: list[dict[str, Any]], problems: list[dict[str, Any]], n_todo: int,
             seconds: float, executor: str) -> dict[str, Any]:
    outcomes = Counter(_outcome(r) for r in records)
    status = Counter(r["status"] for r in records)
    loads = {}
    for r in records:
        w = r.get("worker") or {}
        if w.get("pid") is not None and r["status"] == "done":
            key = f"{w.get('host')}:{w['pid']}"
            loads[key] = max(loads.get(key, 0), int(w.get("model_loads_in_process", 0)))
    return {
        "schema_version": "1",
        "studies": len(records),
        "counts": {k: outcomes.get(k, 0) for k in ("negative", "flagged", "indeterminate",
                                                   "failed")},
        "screened_this_run": n_todo,
        "skipped_complete": status.get("skipped", 0),
        "discovery_problems": problems,
        "failures": [{"key": r["key"], "study_uid_hash": r.get("uid_hash"), **(r["error"] or {})}
                     for r in records if r["status"] == "failed"],
        "executor": executor,
        "model_loads_per_worker": loads,
        "seconds": round(seconds, 2),
        "studies_per_hour": round(3600 * n_todo / seconds, 1) if seconds > 0 and n_todo else None,
    }


def run_batch_cli(args: argparse.Namespace) -> int:
    """Entry point of `screener batch`; exit 0 when every study has a report, 1 otherwise."""
    config = load_config(args.config)
    if args.dask and args.scheduler:
        print("screener batch: give --dask local or --scheduler, not both", file=sys.stderr)
        return 2
    try:
        result = run_batch(args.roots, args.output, config, workers=args.workers, dask=args.dask,
                           scheduler=args.scheduler, force=args.force, device=args.device)
    except (OutputLockedError, IdentityMismatchError) as exc:
        print(f"screener batch: {exc}", file=sys.stderr)
        return 2
    except (OSError, TimeoutError) as exc:
        # e.g. no dask scheduler at --scheduler, or OUTDIR not writable
        print(f"screener batch: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    s = result.summary
    c = s["counts"]
    print(f"{s['studies']} studies: {c['flagged']} flagged, {c['indeterminate']} indeterminate, "
          f"{c['negative']} negative, {c['failed']} failed "
          f"({s['skipped_complete']} already complete, skipped); "
          f"worklist: {Path(args.output) / 'worklist.csv'}")
    if s["discovery_problems"]:
        print(f"{len(s['discovery_problems'])} file(s) could not be read during discovery; "
              f"see batch_summary.json", file=sys.stderr)
    return 1 if c["failed"] else 0
