"""Write a volume as a classic single-frame DICOM MR series, with exact geometry.

Used to build the bundled example study, test studies (any orientation, slice thickness and
gap) and benchmark inputs. Geometry convention: voxel (i, j, k) maps to RAS+ world mm by
`affine`; slice k is one file; in each file, columns run along i and rows along j, so the
stored pixel array is data[:, :, k].T and ImageOrientationPatient holds the LPS directions of
the i and j axes.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"

# Acquisition headers that make a series look like a given contrast to the selector.
CONTRAST_HEADERS: dict[str, dict[str, Any]] = {
    "T1": {"SeriesDescription": "T1 MPRAGE SAG", "ScanningSequence": ["GR", "IR"],
           "SequenceVariant": ["SK", "SP", "MP"], "RepetitionTime": 2300.0, "EchoTime": 2.98,
           "InversionTime": 900.0, "MRAcquisitionType": "3D"},
    "T2": {"SeriesDescription": "T2 TSE AX", "ScanningSequence": ["SE"],
           "SequenceVariant": ["SK", "SP"], "RepetitionTime": 5000.0, "EchoTime": 100.0,
           "MRAcquisitionType": "2D"},
    "FLAIR": {"SeriesDescription": "T2 FLAIR AX", "ScanningSequence": ["SE", "IR"],
              "SequenceVariant": ["SK", "SP", "MP"], "RepetitionTime": 9000.0, "EchoTime": 85.0,
              "InversionTime": 2500.0, "MRAcquisitionType": "2D"},
    "localizer": {"SeriesDescription": "localizer", "ScanningSequence": ["GR"],
                  "SequenceVariant": ["SP"], "RepetitionTime": 8.6, "EchoTime": 4.0,
                  "MRAcquisitionType": "2D", "ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]},
}


@dataclass
class StudyIdentity:
    """Identifiers of a (synthetic) patient and study. Tests use recognisable values to check
    that none of them leaks into logs."""

    patient_name: str = "Doe^Jane"
    patient_id: str = "PID-0001"
    patient_birth_date: str = "19700101"
    patient_sex: str = "F"
    accession_number: str = "ACC-0001"
    study_instance_uid: str = field(default_factory=lambda: _uid())
    study_date: str = "20260101"
    study_id: str = "1"


def _uid() -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid())


def _ds(value: float) -> str:
    """Format a number for a DS element (16 characters max)."""
    text = f"{value:.6g}"
    if len(text) > 16:
        text = f"{value:.8e}"[:16]
    return text


def write_mr_series(
    data: npt.ArrayLike,
    affine: npt.ArrayLike,
    out_dir: str | Path,
    *,
    identity: StudyIdentity | None = None,
    contrast: str = "T1",
    series_instance_uid: str | None = None,
    series_number: int = 1,
    slice_thickness_mm: float | None = None,
    frame_of_reference_uid: str | None = None,
    extra: Mapping[str, Any] | None = None,
    file_prefix: str = "IM",
) -> list[Path]:
    """Write `data` (i, j, k) as one DICOM file per slice k. Returns the paths in slice order.

    Args:
        data: 3D array of intensities; stored as int16 with RescaleSlope/Intercept so that the
            rescaled values reproduce `data` to within slope/2.
        affine: 4x4 voxel -> RAS+ mm. Any rotation (oblique) is allowed; no shear.
        out_dir: folder to write into (created).
        identity: patient/study identifiers; a new study when omitted.
        contrast: key of CONTRAST_HEADERS for sequence headers.
        slice_thickness_mm: SliceThickness; defaults to the slice spacing (no gap). Smaller
            than the spacing makes a gap.
        extra: more top-level elements by keyword (override everything else).
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

    vol = np.asarray(data, dtype=np.float64)
    if vol.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {vol.shape}")
    aff = np.asarray(affine, dtype=np.float64)
    ident = identity or StudyIdentity()
    series_uid = series_instance_uid or _uid()
    for_uid = frame_of_reference_uid or _uid()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    lps = LPS_FROM_RAS @ aff[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    if np.any(spacing <= 0):
        raise ValueError("affine has a zero-length axis")
    dirs = lps / spacing
    row_dir, col_dir = dirs[:, 0], dirs[:, 1]  # IOP: along columns (i), along rows (j)
    thickness = float(slice_thickness_mm) if slice_thickness_mm is not None else float(spacing[2])

    lo, hi = float(vol.min()), float(vol.max())
    # Round slope/intercept to what the DS strings hold, so stored values reproduce `data`.
    slope = float(_ds(max((hi - lo) / 32000.0, 1e-6)))
    intercept = float(_ds(lo))
    stored = np.round((vol - intercept) / slope).astype(np.int16)

    headers = dict(CONTRAST_HEADERS.get(contrast, CONTRAST_HEADERS["T1"]))
    headers.update(extra or {})
    now = _dt.datetime.now()
    paths: list[Path] = []
    for k in range(vol.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        sop_uid = _uid()
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MR_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.Modality = "MR"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.PatientName = ident.patient_name
        ds.PatientID = ident.patient_id
        ds.PatientBirthDate = ident.patient_birth_date
        ds.PatientSex = ident.patient_sex
        ds.StudyInstanceUID = ident.study_instance_uid
        ds.StudyDate = ident.study_date
        ds.StudyTime = "120000"
        ds.StudyID = ident.study_id
        ds.AccessionNumber = ident.accession_number
        ds.ReferringPhysicianName = ""
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDate = ident.study_date
        ds.ContentDate = now.strftime("%Y%m%d")
        ds.ContentTime = now.strftime("%H%M%S")
        ds.InstanceNumber = k + 1
        ds.Manufacturer = "screener-synthetic"
        ds.BodyPartExamined = "HEAD"
        ds.MagneticFieldStrength = 3.0
        ds.FrameOfReferenceUID = for_uid
        ds.PositionReferenceIndicator = ""
        ds.PatientPosition = "HFS"
        ipp = LPS_FROM_RAS @ (aff @ np.array([0.0, 0.0, float(k), 1.0]))[:3]
        ds.ImagePositionPatient = [_ds(v) for v in ipp]
        ds.ImageOrientationPatient = [_ds(v) for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]  # row spacing (j), column spacing (i)
        ds.SliceThickness = _ds(thickness)
        ds.SpacingBetweenSlices = _ds(spacing[2])
        ds.SliceLocation = _ds(float(np.dot(ipp, np.cross(row_dir, col_dir))))
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = vol.shape[1]
        ds.Columns = vol.shape[0]
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope = _ds(slope)
        ds.RescaleIntercept = _ds(intercept)
        ds.RescaleType = "US"
        for key, value in headers.items():
            setattr(ds, key, value)
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        path = out / f"{file_prefix}{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
