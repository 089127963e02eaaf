"""Crash-safe file output, the one implementation every writer in the package uses.

A file is written under a temporary name beside its final name (same file system), flushed and
fsynced, renamed over the final name, and the folder is fsynced: a reader, or a rerun after
SIGKILL, sees the old file, the new file or no file, never half of one.

Temporary names are ``.tmp-<random>.<final name>``: hidden, marked by ``TMP_MARK`` so that
clean-up after a crash can find them (batch outputs, the PACS spool), and ending in the final
name so writers that choose a format by extension (nibabel's ``.nii.gz``, matplotlib's ``.png``)
behave.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"


def fsync_dir(path: str | Path, strict: bool = False) -> None:
    """Flush a directory entry (a rename) to disk.

    Args:
        strict: raise when the folder cannot be opened or synced (the PACS spool, which must
            not acknowledge an instance it cannot vouch for); otherwise best effort, a no-op
            where directories cannot be opened.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        if strict:
            raise
        return
    try:
        os.fsync(fd)
    except OSError:
        if strict:
            raise
    finally:
        os.close(fd)


def temp_name(final: Path) -> Path:
    """The temporary sibling a write of `final` goes through."""
    return final.with_name(f"{TMP_MARK}{secrets.token_hex(4)}.{final.name}")


def atomic_write(path: str | Path, write: Callable[[Path], object], strict: bool = False) -> Path:
    """Call ``write(tmp_path)``, then move the result onto ``path`` atomically.

    Args:
        path: the final file name; its folder is created when missing.
        write: writes the whole file at the path it is given.
        strict: a folder that cannot be synced after the rename is an error (fsync_dir).
    Returns:
        ``path`` as a Path. On any error the temporary file is removed, the exception
        propagates and ``path`` is untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(final)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent, strict=strict)
    return final


def write_bytes_atomic(path: str | Path, data: bytes, strict: bool = False) -> Path:
    """Write `data` to `path` atomically (`strict` as in atomic_write)."""
    return atomic_write(path, lambda p: p.write_bytes(data), strict=strict)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 `text` to `path` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write `obj` as indented UTF-8 JSON atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")
