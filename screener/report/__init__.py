"""Report stage: report.json, DICOM SR + SEG, overlay PNG, self-contained HTML.

Every output is written atomically through screener.atomic: a reader never sees a
half-written file and a crash leaves either the old file or the new one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from screener.config import load_config, section


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
