"""Durable spool of received instances: nothing acknowledged is ever lost.

Each instance is written under a temporary name, fsynced, renamed to its final name and the
directory fsynced, all before the caller acknowledges it. Names derive from hashes of the UIDs,
never from the UIDs themselves, so a hostile UID such as `../../etc` cannot escape the spool.
Layout: `<spool>/<study key>/<series key>/<sop key>.dcm`.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from screener.atomic import TMP_MARK, fsync_dir, write_bytes_atomic


def short_hash(text: str, n: int = 16) -> str:
    """A short, stable, path-safe hash of a UID (what logs and file names use instead of PHI)."""
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:n]


def _mkdirs_durable(path: Path) -> None:
    """Create `path` and its missing parents, fsyncing each parent so the entries survive."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            pass
        fsync_dir(d.parent, strict=True)


def durable_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically and durably (temp name, fsync, rename, fsync dir)."""
    path = Path(path)
    _mkdirs_durable(path.parent)
    write_bytes_atomic(path, data, strict=True)


@dataclass(frozen=True)
class SpooledInstance:
    """Where one instance landed and what it was."""

    path: Path
    sha256: str
    size: int


class Spool:
    """The folder of received instances, one subfolder per study.

    Args:
        root: spool folder (created).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        _mkdirs_durable(self.root)
        self._guard = threading.Lock()
        self._study_locks: dict[str, threading.Lock] = {}

    @contextmanager
    def study_lock(self, study_uid: str) -> Iterator[None]:
        """Held around storing + recording an instance and around pruning the study, so
        pruning never deletes an instance between its storing and its acknowledgement."""
        with self._guard:
            lock = self._study_locks.setdefault(self.study_dir(study_uid).name, threading.Lock())
        with lock:
            yield

    def remove_files(self, paths: list[str]) -> int:
        """Delete spooled instance files (only inside the spool) and the folders they empty."""
        root = self.root.resolve()
        n = 0
        for p in map(Path, paths):
            path = p.resolve()
            if not path.is_relative_to(root) or path == root:
                continue
            try:
                path.unlink()
                n += 1
            except FileNotFoundError:
                pass
            for d in (path.parent, path.parent.parent):
                if d != root and d.is_relative_to(root):
                    try:
                        d.rmdir()  # only when empty
                    except OSError:
                        break
        return n

    def study_dir(self, study_uid: str) -> Path:
        """The folder holding one study's instances."""
        return self.root / short_hash(study_uid)

    def instance_path(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        return self.study_dir(study_uid) / short_hash(series_uid) / f"{short_hash(sop_uid, 32)}.dcm"

    def store(self, study_uid: str, series_uid: str, sop_uid: str, data: bytes) -> SpooledInstance:
        """Durably store one encoded instance (DICOM file format bytes)."""
        path = self.instance_path(study_uid, series_uid, sop_uid)
        durable_write(path, data)
        return SpooledInstance(path, hashlib.sha256(data).hexdigest(), len(data))

    def remove_temporaries(self) -> int:
        """Delete half-written files left by a crash (never acknowledged). Returns how many."""
        n = 0
        for tmp in self.root.rglob(f"{TMP_MARK}*"):
            try:
                tmp.unlink()
                n += 1
            except FileNotFoundError:
                pass
        return n

    def free_bytes(self) -> int:
        """Free space on the spool's file system."""
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize
