"""Crash-safe file output: write to a temporary name, fsync, rename into place.

A reader (or a rerun after SIGKILL) sees either the old file, the new file, or no file, never
half of one. Whole study folders are published the same way: built under a staging folder
on the same filesystem, then renamed into place in one step.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from screener.atomic import (TMP_MARK, fsync_dir, write_bytes_atomic,  
                             write_json_atomic, write_text_atomic)

__all__ = ["TMP_MARK", "fsync_dir", "write_bytes_atomic", "write_json_atomic", "write_text_atomic",
           "publish_dir"]


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
