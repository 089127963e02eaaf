"""`screener watch --orthanc URL`: screen the studies an Orthanc server declares stable.

Follows Orthanc's REST `/changes` log for `StableStudy`, pulls instances the service has not
seen with DICOMweb WADO-RS into the spool, and lets the shared worker screen them and push the
SR and SEG back with STOW-RS. The last change processed and every instance pulled are kept in
the state database, so a restart resumes where it stopped; our own SR/SEG arriving in Orthanc
(which makes the study "stable" again) does not re-open the study.
"""

from __future__ import annotations

import dataclasses
import logging
from io import BytesIO
from typing import Any

from screener.pacs.service import ServiceCore
from screener.pacs.settings import WatchSettings
from screener.pacs.spool import short_hash

log = logging.getLogger(__name__)

LAST_SEQ_KEY = "orthanc.last_seq"


class OrthancWatcher:
    """Polls `/changes` and feeds stable studies to the service.

    Args:
        core: the shared service core (state, spool, worker).
        settings: watch settings (orthanc_url required).
    """

    def __init__(self, core: ServiceCore, settings: WatchSettings) -> None:
        import requests

        self.core = core
        self.settings = settings
        self.base = settings.orthanc_url.rstrip("/")
        self.http = requests.Session()
        self.dicomweb_url = f"{self.base}/{settings.dicomweb_root.strip('/')}"
        self.pulled = 0

    def _get(self, path: str, **params: Any) -> Any:
        r = self.http.get(f"{self.base}{path}", params=params or None,
                          timeout=self.settings.request_timeout_s)
        r.raise_for_status()
        return r.json()

    def start_seq(self) -> int:
        """The change sequence number to continue from (remembered across restarts)."""
        saved = self.core.state.get(LAST_SEQ_KEY)
        if saved is not None:
            return int(saved)
        seq = 0
        if self.settings.start_from == "latest":
            seq = int(self._get("/changes", last="")["Last"])
        self.core.state.set(LAST_SEQ_KEY, str(seq))
        return seq

    def poll_once(self) -> bool:
        """Process one page of changes. Returns True when the log is exhausted (Done)."""
        since = self.start_seq()
        page = self._get("/changes", since=since, limit=self.settings.changes_limit)
        for change in page.get("Changes", []):
            if self.core.stop_event.is_set():
                return True
            if change.get("ChangeType") == "StableStudy":
                self.handle_stable_study(str(change["ID"]))
            # Only after the study is safely spooled: a crash re-reads this change.
            self.core.state.set(LAST_SEQ_KEY, str(change["Seq"]))
        if not page.get("Changes"):
            self.core.state.set(LAST_SEQ_KEY, str(max(since, int(page.get("Last", since)))))
        return bool(page.get("Done", True))

    def handle_stable_study(self, orthanc_id: str) -> int:
        """Pull the instances of one stable study that the service has not seen.

        Returns:
            How many instances were pulled (0: nothing new, e.g. only our own SR came in).
        """
        import requests

        state = self.core.state
        try:
            info = self._get(f"/studies/{orthanc_id}")
        except requests.HTTPError as exc:
            if exc.response is not None and exc.response.status_code == 404:
                log.info("study %s was deleted from Orthanc before it was pulled", orthanc_id)
                return 0
            raise
        study_uid = str(info.get("MainDicomTags", {}).get("StudyInstanceUID", ""))
        if not study_uid:
            return 0
        instances = self._get(f"/studies/{orthanc_id}/instances")
        known = state.known_sops(study_uid)
        new = [i for i in instances
               if (sop := i.get("MainDicomTags", {}).get("SOPInstanceUID"))
               and sop not in known and not state.is_own_output(sop)]
        if not new:
            log.debug("study %s stable with nothing new", short_hash(study_uid))
            return 0
        series_ids = {i.get("ParentSeries") for i in new}
        n = 0
        with state.holding(study_uid):  # screened only once the whole study is here
            for series_id in sorted(s for s in series_ids if s):
                series = self._get(f"/series/{series_id}")
                series_uid = series.get("MainDicomTags", {}).get("SeriesInstanceUID", "")
                n += self._pull_series(study_uid, str(series_uid))
            if n:
                state.make_due_now(study_uid, self.settings.quiet_period_s)
        log.info("study %s stable: %d new instances pulled", short_hash(study_uid), n)
        self.pulled += n
        return n

    def _pull_series(self, study_uid: str, series_uid: str) -> int:
        from dicomweb_client.api import DICOMwebClient

        client = DICOMwebClient(url=self.dicomweb_url, session=self.http,
                                timeout=self.settings.request_timeout_s)
        n = 0
        for ds in client.retrieve_series(study_uid, series_uid):
            sop_uid = str(ds.get("SOPInstanceUID", ""))
            if not sop_uid or self.core.state.is_own_output(sop_uid):
                continue
            buf = BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            data = buf.getvalue()
            with self.core.spool.study_lock(study_uid):
                stored = self.core.spool.store(study_uid, series_uid, sop_uid, data)
                self.core.state.record_instance(sop_uid, study_uid, series_uid,
                                                str(stored.path), stored.sha256)
            n += 1
        return n

    def run(self) -> None:
        """Poll until the service is asked to stop; errors are logged and retried."""
        while not self.core.stop_event.is_set():
            try:
                done = self.poll_once()
            except Exception as exc:  # noqa: BLE001 - Orthanc down, HTTP errors: retry
                log.warning("Orthanc poll failed (%s); retrying", type(exc).__name__)
                done = True
            if done:
                self.core.stop_event.wait(self.settings.poll_interval_s)


def run_watch_cli(args: Any) -> int:
    """Entry point of `screener watch --orthanc URL [--config FILE]`."""
    from screener.config import ConfigError, load_config
    from screener.pacs.settings import watch_settings

    try:
        cfg = load_config(getattr(args, "config", None))
        settings = watch_settings(cfg, args.orthanc)
    except ConfigError as exc:
        print(f"screener watch: {exc}")
        return 2
    if not settings.stow_url and settings.c_store is None:
        settings = dataclasses.replace(
            settings, stow_url=f"{settings.orthanc_url.rstrip('/')}/{settings.dicomweb_root.strip('/')}")
    core = ServiceCore(settings, cfg)
    core.install_signal_handlers()
    core.recover()
    watcher = OrthancWatcher(core, settings)
    log.info("watching %s", settings.orthanc_url)
    try:
        core.start_worker()
        watcher.run()
    finally:
        core.shutdown()
        log.info("watch: %d instances pulled", watcher.pulled)
    return 0
