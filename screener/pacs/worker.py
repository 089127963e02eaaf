"""The service's screening loop, shared by `serve` and `watch`.

Picks studies that have been quiet for the configured period, screens each generation exactly
once (a late instance re-opens a study; the new report supersedes the old, which is kept under
`<results>/_superseded/`), records the screening and queues its SR and SEG for delivery in one
transaction, then delivers with retries. Keeps `<results>/worklist.csv` current.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from screener.pacs.runner import ScreeningRunner, ScreenResult
from screener.pacs.sender import SendError, deliver
from screener.pacs.settings import WorkerSettings
from screener.pacs.spool import Spool, short_hash
from screener.pacs.state import ServiceState

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 60.0  # how often the loop looks for spooled studies past their retention

def _output_path(result: ScreenResult, results_dir: Path, rel: str | None) -> Path | None:
    """Resolve a report's relative output path (relative to the study folder or to OUTDIR)."""
    if not rel:
        return None
    for base in (result.report_dir, results_dir):
        p = (base / rel).resolve()
        if p.is_file() and p.is_relative_to(results_dir.resolve()):
            return p
    return None


class StudyWorker:
    """Screens due studies and delivers their results.

    Args:
        settings: the serve or watch settings.
        state: service state database.
        spool: where received instances are.
        runner: the screening child process.
    """

    def __init__(self, settings: WorkerSettings, state: ServiceState, spool: Spool,
                 runner: ScreeningRunner) -> None:
        self.settings = settings
        self.state = state
        self.spool = spool
        self.runner = runner
        self.results_dir = Path(settings.results_dir)
        self.results_dir.mkdir(parents=True, exist_ok=True)
        dests = []
        if settings.c_store is not None:
            dests.append("c_store")
        if settings.stow_url:
            dests.append("stow")
        self.destinations = tuple(dests)
        self.stop_event = threading.Event()
        self.busy = threading.Event()
        self._last_prune = 0.0

    # -- screening ---------------------------------------------------------------------------
    def screen_due(self) -> int:
        """Screen every study that is due now. Returns how many were screened."""
        n = 0
        for study_uid in self.state.due_studies(self.settings.quiet_period_s):
            if self.stop_event.is_set():
                break
            generation = self.state.claim(study_uid)
            if generation is None:
                continue
            self.busy.set()
            try:
                self._screen_one(study_uid, generation)
                n += 1
                self.deliver_pending()
            except BaseException:
                self.state.release(study_uid, failed=not self.stop_event.is_set())
                raise
            finally:
                self.busy.clear()
        return n

    def _screen_one(self, study_uid: str, generation: int) -> None:
        key = short_hash(study_uid)
        started = time.time()
        previous = self.state.study(study_uid)
        log.info("screening study %s (generation %d, %d instances)", key, generation,
                 self.state.instance_count(study_uid))
        if previous is not None and previous.screen_count > 0:
            # Keep the report this screening will supersede (the pipeline overwrites it).
            self._keep_superseded(previous.report_path, study_uid, previous.screened_generation)
        result = self.runner.screen(study_uid, self.spool.study_dir(study_uid), self.results_dir)
        if self.stop_event.is_set() and result.error:
            # Interrupted by shutdown, not a verdict on the study: screen it again after restart.
            self.state.release(study_uid, failed=False)
            return
        result.write_fallback()
        report = result.report
        decision = str(report.get("decision") or "indeterminate")
        if decision not in ("negative", "flagged", "indeterminate"):
            decision = "indeterminate"
        report_path = result.report_dir / "report.json"
        outputs = []
        outs = report.get("outputs") or {}
        for kind in ("sr", "seg"):
            path = _output_path(result, self.results_dir, outs.get(kind))
            if path is not None:
                sop_uid = self._sop_uid(path)
                if sop_uid:
                    outputs.append((sop_uid, kind, str(path)))
        self.state.complete(study_uid, generation, started, decision, str(report_path),
                            outputs, self.destinations if outputs else ())
        log.info("study %s screened: %s in %.1f s (%d result objects queued)", key, decision,
                 time.time() - started, len(outputs) if self.destinations else 0)
        self.write_worklist()

    def _keep_superseded(self, report_path: str | None, study_uid: str, generation: int) -> None:
        """Keep the report a new screening supersedes, for the record."""
        if not report_path or not Path(report_path).is_file():
            return
        dest = self.results_dir / "_superseded" / short_hash(study_uid) / f"report.gen{generation}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(report_path, dest)

    @staticmethod
    def _sop_uid(path: Path) -> str:
        import pydicom

        try:
            return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        except Exception:  # noqa: BLE001 - an unreadable result is simply not sent
            log.error("result object %s is unreadable; not sent", path.name)
            return ""

    # -- delivery ----------------------------------------------------------------------------
    def deliver_pending(self) -> int:
        """Try every pending delivery whose retry time has come. Returns how many succeeded."""
        ok = 0
        for out in self.state.pending_outputs():
            for dest in out.pending:
                if self.stop_event.is_set():
                    return ok
                try:
                    deliver(Path(out.path), dest, c_store_dest=self.settings.c_store,
                            stow_url=self.settings.stow_url,
                            calling_ae_title=self.settings.calling_ae_title)
                except (SendError, OSError) as exc:
                    keep = self.state.output_failed(out.sop_uid, str(exc), self.settings.send_retry_s,
                                                    self.settings.send_max_attempts)
                    log.warning("delivery of %s %s (study %s) to %s failed%s: %s", out.kind,
                                short_hash(out.sop_uid), short_hash(out.study_uid), dest,
                                "" if keep else " for the last time", exc)
                    break
                except Exception as exc:  # noqa: BLE001 - e.g. a malformed result object
                    self.state.output_failed(out.sop_uid, repr(exc), self.settings.send_retry_s,
                                             self.settings.send_max_attempts)
                    log.error("delivery of %s failed: %s", short_hash(out.sop_uid),
                              type(exc).__name__)
                    break
                self.state.output_delivered(out.sop_uid, dest)
                ok += 1
        return ok

    # -- worklist ----------------------------------------------------------------------------
    def write_worklist(self) -> None:
        """Rewrite `<results>/worklist.csv` and `.json` (batch's format and reading order) from
        the latest report of each study."""
        from screener.worklist import order_rows, row_from_record, write_worklist

        rows = []
        for row in self.state.studies():
            if row.screen_count == 0 or not row.report_path:
                continue
            report_path = Path(row.report_path)
            report: dict[str, Any] = {}
            try:
                report = json.loads(report_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                pass
            key = (str(report_path.parent.relative_to(self.results_dir))
                   if report_path.is_relative_to(self.results_dir) else short_hash(row.study_uid))
            record = {"key": key, "study_instance_uid": row.study_uid,
                      "status": "done" if report else "failed", "report": report,
                      "error": {} if report else {"stage": "report", "error": "missing"}}
            rows.append(row_from_record(record, self.results_dir))
        write_worklist(order_rows(rows), self.results_dir)

    # -- spool retention ---------------------------------------------------------------------
    def prune_spool(self, now: float | None = None) -> int:
        """Delete the spooled instances of studies past `spool_retention_days` that are screened
        and delivered (state.prunable_studies); results are kept. Returns how many studies."""
        days = self.settings.spool_retention_days
        if days <= 0:
            return 0
        cutoff = (time.time() if now is None else now) - days * 86400.0
        n = 0
        for study_uid in self.state.prunable_studies(cutoff):
            with self.spool.study_lock(study_uid):
                if not self.state.prunable_studies(cutoff, study_uid):  # changed meanwhile
                    continue
                # Files first: after a crash in between, the records lead to them again.
                self.spool.remove_files(self.state.instance_paths(study_uid))
                self.state.forget_instances(study_uid)
                n += 1
        if n:
            log.info("spool: instances of %d screened studies deleted (retention %g days)", n, days)
        return n

    # -- loop --------------------------------------------------------------------------------
    def run(self) -> None:
        """Loop until `stop_event` is set. Never raises: a failure is logged and retried."""
        while not self.stop_event.is_set():
            try:
                self.screen_due()
                self.deliver_pending()
                if time.time() - self._last_prune >= PRUNE_EVERY_S:
                    self._last_prune = time.time()
                    self.prune_spool()
            except Exception:  # noqa: BLE001 - the loop must outlive any single failure
                log.exception("screening loop error; continuing")
            self.stop_event.wait(self.settings.poll_interval_s)

    def stop(self) -> None:
        """Ask the loop to stop; a screening in progress is abandoned and redone at next start."""
        self.stop_event.set()
        if self.busy.is_set():
            self.runner.kill()
