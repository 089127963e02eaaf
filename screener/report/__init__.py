"""Report stage: report.json, DICOM SR + SEG, overlay PNG, self-contained HTML.

Every output is written atomically: to a temporary name in the same folder, flushed and
fsynced, then renamed over the final name (and the folder fsynced), so a reader never sees a
half-written file and a crash leaves either the old file or the new one.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from screener.config import load_config, section


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` then move the result into ``path`` atomically.

    The temporary file is ``.<name>.<random>.tmp<suffix>`` beside ``path`` (same file system,
    same suffix so writers that look at the extension behave). On any error it is removed
    and the exception propagates; ``path`` is untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp{final.suffix}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(final.parent)
    return final


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda p: p.write_bytes(text.encode("utf-8")))


@dataclass(frozen=True)
class ReportConfig:
    """The ``report:`` section (values in configs/default.yaml)."""

    overlay_max_slices: int
    overlay_dpi: int
    overlay_prob_min: float
    sr_series_number: int
    seg_series_number: int
    series_description: str
    manufacturer: str


def report_config(cfg: ReportConfig | Mapping[str, Any] | None = None) -> ReportConfig:
    """The report settings from a whole config mapping (default: configs/default.yaml)."""
    if isinstance(cfg, ReportConfig):
        return cfg
    return section(dict(cfg) if cfg is not None else load_config(), "report", ReportConfig)
