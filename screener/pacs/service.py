"""What `serve` and `watch` share: state, spool, screening worker, restart recovery, SIGTERM.

`ServiceCore` wires the pieces together. On start it deletes half-written spool files (never
acknowledged), registers spooled files the database does not know (the process died between
the durable write and the database commit), and makes interrupted screenings due again.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from screener.pacs.runner import ScreeningRunner, wait_ready
from screener.pacs.settings import WorkerSettings
from screener.pacs.spool import Spool, short_hash
from screener.pacs.state import ServiceState
from screener.pacs.worker import StudyWorker

log = logging.getLogger(__name__)

OWN_OUTPUTS_DIR = "_own"  # spool subfolder for our own SR/SEG coming back (not screened)


def read_uids(path: Path) -> tuple[str, str, str] | None:
    """(StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID) of a DICOM file, or None."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True,
                             specific_tags=["StudyInstanceUID", "SeriesInstanceUID",
                                            "SOPInstanceUID"])
        uids = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
    except Exception:  # noqa: BLE001 - unreadable file: reported by the caller
        return None
    return uids if all(uids) else None


class ServiceCore:
    """State + spool + screening worker, with recovery and shutdown.

    Args:
        settings: serve or watch settings.
        config: full merged config (handed to the pipeline).
    """

    def __init__(self, settings: WorkerSettings, config: dict[str, Any]) -> None:
        # pynetdicom's own INFO/DEBUG output is per PDU and per message: keep the log readable.
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        self.settings = settings
        self.spool = Spool(settings.spool_dir)
        self.state = ServiceState(settings.state_file)
        self.runner = ScreeningRunner(settings.pipeline, config, settings.study_time_limit_s)
        self.worker = StudyWorker(settings, self.state, self.spool, self.runner)
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def recover(self) -> None:
        """Bring state and spool back in line after a stop or crash."""
        removed = self.spool.remove_temporaries()
        known = self.state.known_paths()
        adopted = 0
        for path in sorted(self.spool.root.rglob("*.dcm")):
            if str(path) in known or path.relative_to(self.spool.root).parts[0] == OWN_OUTPUTS_DIR:
                continue
            uids = read_uids(path)
            if uids is None:
                log.warning("spooled file %s is unreadable; left in place", path.name)
                continue
            study_uid, series_uid, sop_uid = uids
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            if self.state.record_instance(sop_uid, study_uid, series_uid, str(path), sha):
                adopted += 1
        interrupted = self.state.recover()
        log.info("recovery: %d temporary files removed, %d spooled instances adopted, "
                 "%d interrupted screenings to redo (%s)", removed, adopted, len(interrupted),
                 ", ".join(short_hash(u) for u in interrupted) or "none")

    def start_worker(self) -> None:
        """Start the screening child and the worker thread."""
        took = wait_ready(self.runner)
        log.info("screening process ready in %.1f s", took)
        self._thread = threading.Thread(target=self.worker.run, name="screener-worker", daemon=True)
        self._thread.start()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT ask for a graceful stop (main thread only)."""
        def _handler(signum: int, _frame: Any) -> None:
            log.warning("signal %d received: shutting down", signum)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, _handler)
        signal.signal(signal.SIGINT, _handler)

    def shutdown(self) -> None:
        """Stop the worker (an unfinished screening is redone at next start) and close state."""
        self.worker.stop()
        if self._thread is not None:
            self._thread.join(30)
        self.runner.stop()
        self.state.close()
        log.info("stopped")
