"""Typed settings of the io stage (section `io:` of configs/default.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from screener.config import load_config, section


@dataclass(frozen=True)
class IOConfig:
    """Limits and tolerances of study ingestion. Defaults live in configs/default.yaml."""

    max_voxels_per_series: int = 400_000_000
    max_pixel_bytes_per_file: int = 1_073_741_824
    max_matrix: int = 8192
    max_frames_per_file: int = 100_000
    max_zip_uncompressed_bytes: int = 8_589_934_592
    max_zip_members: int = 200_000
    max_files: int = 2_000_000
    series_rules: str = "configs/series-rules.yaml"
    dicom_suffixes: list[str] = field(default_factory=lambda: [".dcm", ".dicom", ".ima", ".img"])
    orientation_tolerance: float = 0.001
    orientation_split_tolerance: float = 0.1
    position_tolerance_mm: float = 0.05
    gantry_tilt_tolerance_deg: float = 0.1
    missing_slice_factor: float = 1.5
    max_voxel_mm: float = 50.0
    min_voxel_mm: float = 0.001
    read_workers: int = 1


def io_config(config: dict[str, Any] | IOConfig | None = None) -> IOConfig:
    """The io section from a full config mapping (defaults when None)."""
    if isinstance(config, IOConfig):
        return config
    cfg = load_config() if config is None else config
    return section(cfg, "io", IOConfig)
