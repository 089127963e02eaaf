"""Types shared by every stage of the pipeline.

Kept in one place (TorchIO style) so that io, select, qc, model, decide and report agree on
what a volume, a series and a decision are. Nothing here imports torch or monai.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
Affine = npt.NDArray[np.float64]  # 4x4 voxel index -> RAS+ world mm


class SequenceClass(str, enum.Enum):
    """Sequence classes the selector can assign (rules in configs/series-rules.yaml)."""

    T1 = "T1"
    T1C = "T1c"
    T2 = "T2"
    FLAIR = "FLAIR"
    PD = "PD"
    SWI = "SWI"  # SWI / T2*-weighted GRE
    DWI = "DWI"
    ADC = "ADC"
    LOCALIZER = "localizer"
    OTHER = "other"  # derived, unknown, perfusion, spectroscopy ...

    @property
    def structural(self) -> bool:
        """True for the contrasts the abnormality model is meant to assess."""
        return self in STRUCTURAL_SEQUENCES


STRUCTURAL_SEQUENCES = frozenset(
    {SequenceClass.T1, SequenceClass.T1C, SequenceClass.T2, SequenceClass.FLAIR,
     SequenceClass.PD, SequenceClass.SWI}
)


class Decision(str, enum.Enum):
    NEGATIVE = "negative"
    FLAGGED = "flagged"
    INDETERMINATE = "indeterminate"


@dataclass
class SeriesInfo:
    """What is known about one series (or one split of a series) from its headers.

    Names follow the DICOM vocabulary. For NIfTI input the UIDs are derived from the file
    path (stable, not real DICOM UIDs) and `source_files` holds the NIfTI path.
    """

    study_instance_uid: str
    series_instance_uid: str
    series_description: str = ""
    modality: str = "MR"
    body_part: str = ""
    accession_number: str = ""
    series_number: int | None = None
    sequence: SequenceClass = SequenceClass.OTHER
    source: str = "dicom"  # "dicom" | "nifti"
    # Slice-ordered source files (DICOM: one per slice, or one multi-frame file).
    source_files: list[Path] = field(default_factory=list)
    # SOP references of the slices, in the same order as the volume's slice axis.
    sop_class_uid: str = ""
    sop_instance_uids: list[str] = field(default_factory=list)
    voxel_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    slice_thickness_mm: float | None = None
    slice_gap_mm: float | None = None  # spacing between slices minus thickness (>= 0 means gap)
    orientation: str = ""  # axis codes, e.g. "RAS", "LPI"
    split_key: str = ""  # why this series was split from its SeriesInstanceUID (echo, orientation ...)
    warnings: list[str] = field(default_factory=list)
    headers: dict[str, Any] = field(default_factory=dict)  # TR, TE, TI, ImageType ... (no PHI)
    # Geometry from headers (io): array shape (i, j, k[, t]) and voxel -> RAS+ affine (4x4 rows).
    shape: tuple[int, ...] = ()
    affine: list[list[float]] | None = None
    # Volume order of the 2D images: (index into source_files, frame/tile index in that file),
    # slices fastest, then volumes. Lets load_series pick frames of a split multi-frame file.
    frames: list[tuple[int, int]] = field(default_factory=list)
    # (RescaleSlope, RescaleIntercept) of each entry of `frames` (io applies them when loading).
    rescale: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class SeriesVolume:
    """A 3D (or 4D, last axis = volumes) array with its voxel -> RAS+ world affine."""

    data: FloatArray
    affine: Affine
    info: SeriesInfo

    def __post_init__(self) -> None:
        if self.data.ndim not in (3, 4):
            raise ValueError(f"volume must be 3D or 4D, got shape {self.data.shape}")
        if self.affine.shape != (4, 4) or not np.all(np.isfinite(self.affine)):
            raise ValueError("affine must be a finite 4x4 matrix")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)


@dataclass
class Study:
    """All series found for one StudyInstanceUID (or one NIfTI study folder)."""

    study_instance_uid: str
    series: list[SeriesInfo] = field(default_factory=list)
    accession_number: str = ""
    source: str = ""  # where it was read from (path), for the report
