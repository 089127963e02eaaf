"""Whole study folders published in one step: built under a staging folder on the same
filesystem, then renamed into place, so a reader (or a rerun after SIGKILL) sees the old folder,
the new one or none. Single files are written by screener.atomic.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from screener.atomic import fsync_dir


def publish_dir(staged: Path, final: Path, trash_root: Path) -> None:
    """Move a fully written folder `staged` to `final` with a rename.

    An existing `final` (an old or incomplete result) is first renamed into `trash_root`
    and deleted afterwards; all three folders must be on one filesystem.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    old: Path | None = None
    if final.exists():
        trash_root.mkdir(parents=True, exist_ok=True)
        old = trash_root / f"{final.name}-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
    os.rename(staged, final)
    fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
