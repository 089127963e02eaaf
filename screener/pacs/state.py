"""Service state in SQLite: instances received, study generations, screenings, outputs to send.

The spool holds the data; this database holds what was done with it, so a restart resumes
exactly where the service stopped. A study's `generation` grows whenever an instance that was
not seen before (or one whose bytes changed) arrives; a study is due for screening when its
generation is ahead of the generation last screened and it has been quiet long enough. One
screening is recorded per completed run, which is what "screened exactly once" is checked on.
Every write is a transaction with `synchronous=FULL`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from screener.pacs.spool import _mkdirs_durable

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
  sop_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, series_uid TEXT NOT NULL,
  path TEXT NOT NULL, sha256 TEXT NOT NULL, received_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS instances_study ON instances(study_uid);
CREATE TABLE IF NOT EXISTS studies (
  study_uid TEXT PRIMARY KEY, generation INTEGER NOT NULL DEFAULT 0,
  screened_generation INTEGER NOT NULL DEFAULT 0, last_received REAL NOT NULL,
  status TEXT NOT NULL DEFAULT 'idle', decision TEXT, report_path TEXT,
  screen_count INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS screenings (
  id INTEGER PRIMARY KEY AUTOINCREMENT, study_uid TEXT NOT NULL, generation INTEGER NOT NULL,
  started_at REAL NOT NULL, finished_at REAL NOT NULL, decision TEXT, report_path TEXT);
CREATE TABLE IF NOT EXISTS outputs (
  sop_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, generation INTEGER NOT NULL,
  kind TEXT NOT NULL, path TEXT NOT NULL, pending TEXT NOT NULL DEFAULT '',
  attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0, last_error TEXT);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class StudyRow:
    study_uid: str
    generation: int
    screened_generation: int
    last_received: float
    status: str
    decision: str | None
    report_path: str | None
    screen_count: int


@dataclass(frozen=True)
class OutputRow:
    sop_uid: str
    study_uid: str
    kind: str
    path: str
    pending: tuple[str, ...]  # destinations still to deliver to: "c_store", "stow"
    attempts: int


class ServiceState:
    """Thread-safe access to the state database.

    Args:
        path: SQLite file (parent folders are created).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        _mkdirs_durable(self.path.parent)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._held: dict[str, int] = {}  # studies being fetched: not due until released

    @contextmanager
    def holding(self, study_uid: str) -> Iterator[None]:
        """Keep a study from being screened while its instances are being fetched (in memory:
        after a crash the fetch is redone, and recover() restarts the quiet period)."""
        with self._lock:
            self._held[study_uid] = self._held.get(study_uid, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._held[study_uid] -= 1
                if not self._held[study_uid]:
                    del self._held[study_uid]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- receiving ---------------------------------------------------------------------------
    def record_instance(self, sop_uid: str, study_uid: str, series_uid: str, path: str,
                        sha256: str, now: float | None = None) -> bool:
        """Note a durably spooled instance. Returns True when it re-opens (or opens) the study,
        False for an identical duplicate of an instance already held (which still counts as
        activity: the quiet period restarts)."""
        now = time.time() if now is None else now
        with self._tx() as db:
            row = db.execute("SELECT sha256, study_uid FROM instances WHERE sop_uid=?",
                             (sop_uid,)).fetchone()
            if row is not None and row[0] == sha256 and row[1] == study_uid:
                # Nothing new, but the study is still being sent: its quiet period restarts.
                db.execute("UPDATE studies SET last_received=MAX(last_received, ?) "
                           "WHERE study_uid=?", (now, study_uid))
                return False
            db.execute("INSERT OR REPLACE INTO instances VALUES (?,?,?,?,?,?)",
                       (sop_uid, study_uid, series_uid, path, sha256, now))
            db.execute("INSERT INTO studies(study_uid, generation, last_received) VALUES (?,1,?) "
                       "ON CONFLICT(study_uid) DO UPDATE SET generation=generation+1, "
                       "last_received=excluded.last_received", (study_uid, now))
            return True

    def known_paths(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT path FROM instances")}

    def known_sops(self, study_uid: str) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute(
                "SELECT sop_uid FROM instances WHERE study_uid=?", (study_uid,))}

    def instance_count(self, study_uid: str | None = None) -> int:
        with self._lock:
            if study_uid is None:
                return int(self._db.execute("SELECT COUNT(*) FROM instances").fetchone()[0])
            return int(self._db.execute("SELECT COUNT(*) FROM instances WHERE study_uid=?",
                                        (study_uid,)).fetchone()[0])

    def make_due_now(self, study_uid: str, quiet_period_s: float) -> None:
        """Skip the quiet period for a study known complete (Orthanc's StableStudy)."""
        with self._tx() as db:
            db.execute("UPDATE studies SET last_received=? WHERE study_uid=?",
                       (time.time() - quiet_period_s - 1.0, study_uid))

    # -- screening ---------------------------------------------------------------------------
    def recover(self, now: float | None = None) -> list[str]:
        """After a restart: screenings that were running did not finish; make them due again.

        The quiet period of every study still open restarts now: while the service was down
        its senders could not deliver, so silence then says nothing about completeness (a
        sender retrying an interrupted transfer gets a quiet period to do so).
        """
        now = time.time() if now is None else now
        with self._tx() as db:
            rows = [r[0] for r in db.execute("SELECT study_uid FROM studies WHERE status='screening'")]
            db.execute("UPDATE studies SET status='idle' WHERE status='screening'")
            db.execute("UPDATE studies SET last_received=MAX(last_received, ?) "
                       "WHERE generation > screened_generation", (now,))
        return rows

    def due_studies(self, quiet_period_s: float, now: float | None = None) -> list[str]:
        """Studies with unscreened instances, quiet for `quiet_period_s`, oldest first."""
        now = time.time() if now is None else now
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT study_uid FROM studies WHERE generation > screened_generation "
                "AND status='idle' AND last_received <= ? ORDER BY last_received",
                (now - quiet_period_s,)) if r[0] not in self._held]

    def claim(self, study_uid: str) -> int | None:
        """Mark a due study as being screened; returns the generation the screening covers."""
        with self._tx() as db:
            if study_uid in self._held:
                return None
            row = db.execute("SELECT generation FROM studies WHERE study_uid=? AND status='idle' "
                             "AND generation > screened_generation", (study_uid,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE studies SET status='screening' WHERE study_uid=?", (study_uid,))
            return int(row[0])

    def release(self, study_uid: str, failed: bool = True) -> None:
        """Give a claimed study back without a screening (e.g. on shutdown)."""
        with self._tx() as db:
            db.execute("UPDATE studies SET status='idle', failures=failures+? WHERE study_uid=?",
                       (1 if failed else 0, study_uid))

    def complete(self, study_uid: str, generation: int, started_at: float, decision: str,
                 report_path: str, outputs: list[tuple[str, str, str]],
                 destinations: tuple[str, ...]) -> None:
        """Record one finished screening and queue its outputs, in one transaction.

        Args:
            outputs: (sop_uid, kind, path) of each DICOM object to deliver.
            destinations: where each output goes ("c_store", "stow"); empty = keep on disk only.
        """
        with self._tx() as db:
            db.execute("UPDATE studies SET status='idle', screened_generation=?, decision=?, "
                       "report_path=?, screen_count=screen_count+1 WHERE study_uid=?",
                       (generation, decision, report_path, study_uid))
            db.execute("INSERT INTO screenings(study_uid, generation, started_at, finished_at, "
                       "decision, report_path) VALUES (?,?,?,?,?,?)",
                       (study_uid, generation, started_at, time.time(), decision, report_path))
            for sop_uid, kind, path in outputs:
                db.execute("INSERT OR REPLACE INTO outputs(sop_uid, study_uid, generation, kind, "
                           "path, pending) VALUES (?,?,?,?,?,?)",
                           (sop_uid, study_uid, generation, kind, path, ",".join(destinations)))

    def study(self, study_uid: str) -> StudyRow | None:
        with self._lock:
            row = self._db.execute("SELECT study_uid, generation, screened_generation, "
                                   "last_received, status, decision, report_path, screen_count "
                                   "FROM studies WHERE study_uid=?", (study_uid,)).fetchone()
        return StudyRow(*row) if row else None

    def studies(self) -> list[StudyRow]:
        with self._lock:
            rows = self._db.execute("SELECT study_uid, generation, screened_generation, "
                                    "last_received, status, decision, report_path, screen_count "
                                    "FROM studies ORDER BY study_uid").fetchall()
        return [StudyRow(*r) for r in rows]

    def screenings(self, study_uid: str | None = None) -> list[tuple[str, int, str]]:
        """(study_uid, generation, decision) of every completed screening."""
        with self._lock:
            q = "SELECT study_uid, generation, decision FROM screenings"
            args: tuple[str, ...] = ()
            if study_uid is not None:
                q, args = q + " WHERE study_uid=?", (study_uid,)
            return [tuple(r) for r in self._db.execute(q + " ORDER BY id", args)]  # type: ignore[misc]

    # -- spool retention ---------------------------------------------------------------------
    def prunable_studies(self, received_before: float, study_uid: str | None = None) -> list[str]:
        """Studies (or just `study_uid`) whose spooled instances may go: last instance received
        before the cutoff, screened in their latest generation, not being screened, every
        result delivered, instances still on record. A result given up on (output_failed past
        its attempts: no destination pending, but its last error kept) is not delivered, so
        the study's instances stay for a re-send."""
        q = ("SELECT s.study_uid FROM studies s WHERE s.status='idle' AND s.screen_count > 0 "
             "AND s.screened_generation = s.generation AND s.last_received < ? "
             "AND EXISTS (SELECT 1 FROM instances i WHERE i.study_uid = s.study_uid) "
             "AND NOT EXISTS (SELECT 1 FROM outputs o WHERE o.study_uid = s.study_uid "
             "AND (o.pending != '' OR o.last_error IS NOT NULL))")
        args: tuple[Any, ...] = (received_before,)
        if study_uid is not None:
            q, args = q + " AND s.study_uid = ?", args + (study_uid,)
        with self._lock:
            return [r[0] for r in self._db.execute(q + " ORDER BY s.last_received", args)]

    def instance_paths(self, study_uid: str) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT path FROM instances WHERE study_uid=?", (study_uid,))]

    def forget_instances(self, study_uid: str) -> int:
        """Drop a pruned study's instance records (its screenings and outputs stay)."""
        with self._tx() as db:
            return db.execute("DELETE FROM instances WHERE study_uid=?", (study_uid,)).rowcount

    # -- outputs -----------------------------------------------------------------------------
    def is_own_output(self, sop_uid: str) -> bool:
        """True for an SR/SEG this service produced (so it coming back does not re-open a study)."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM outputs WHERE sop_uid=?",
                                    (sop_uid,)).fetchone() is not None

    def pending_outputs(self, now: float | None = None) -> list[OutputRow]:
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute("SELECT sop_uid, study_uid, kind, path, pending, attempts "
                                    "FROM outputs WHERE pending != '' AND next_try <= ? "
                                    "ORDER BY generation", (now,)).fetchall()
        return [OutputRow(r[0], r[1], r[2], r[3], tuple(p for p in r[4].split(",") if p), r[5])
                for r in rows]

    def output_delivered(self, sop_uid: str, destination: str) -> None:
        with self._tx() as db:
            row = db.execute("SELECT pending FROM outputs WHERE sop_uid=?", (sop_uid,)).fetchone()
            if row is None:
                return
            left = [p for p in row[0].split(",") if p and p != destination]
            db.execute("UPDATE outputs SET pending=?, last_error=NULL WHERE sop_uid=?",
                       (",".join(left), sop_uid))

    def output_failed(self, sop_uid: str, error: str, retry_in_s: float, max_attempts: int) -> bool:
        """Count a failed delivery; returns False when the output is given up on."""
        with self._tx() as db:
            db.execute("UPDATE outputs SET attempts=attempts+1, next_try=?, last_error=? "
                       "WHERE sop_uid=?", (time.time() + retry_in_s, error[:500], sop_uid))
            row = db.execute("SELECT attempts FROM outputs WHERE sop_uid=?", (sop_uid,)).fetchone()
            if row is not None and row[0] >= max_attempts:
                db.execute("UPDATE outputs SET pending='' WHERE sop_uid=?", (sop_uid,))
                return False
            return True

    # -- small key/value store (e.g. the last Orthanc change processed) ---------------------
    def get(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO kv VALUES (?,?)", (key, value))
