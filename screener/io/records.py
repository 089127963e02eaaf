"""One record per 2D image found in a DICOM header, without decoding pixels.

A classic MR file gives one record; an enhanced multi-frame file gives one per frame (from its
per-frame and shared functional groups); a Siemens mosaic gives one per tile, each with the
position of that slice (corrected from the mosaic's top-left corner, slice normal from the
CSA header). Grouping, sorting and geometry then work the same way for all three.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from screener.errors import ResourceLimitError, UnreadableFileError
from screener.io.dicomvalues import (RawHeader, as_float, as_int, as_strings, as_vector, first_item,
                                     group_value)

ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
UNCOMPRESSED_SYNTAXES = frozenset(
    {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
)


@dataclass
class FrameRecord:
    """Header facts of one 2D image (a file, a frame of a multi-frame file, or a mosaic tile)."""

    path: Path
    frame: int  # frame (multi-frame) or tile (mosaic) index within the file, 0-based
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    series_number: int | None
    rows: int
    columns: int
    iop: tuple[float, ...] | None  # ImageOrientationPatient (6 values, LPS)
    ipp: tuple[float, float, float] | None  # ImagePositionPatient (LPS)
    pixel_spacing: tuple[float, float] | None  # (row spacing, column spacing)
    slice_thickness: float | None
    spacing_between_slices: float | None
    echo_number: int | None
    echo_time: float | None
    acquisition_number: int | None
    temporal_index: int | None
    instance_number: int | None
    image_type: tuple[str, ...]
    slope: float = 1.0
    intercept: float = 0.0
    mosaic: int = 0  # number of tiles when the file is a Siemens mosaic
    file_order: int = 0  # order of discovery, the last tie-breaker
    bvalue: float | None = None


@dataclass
class FileHeader:
    """A parsed file: its frame records plus series-level headers (no patient identifiers)."""

    path: Path
    records: list[FrameRecord]
    headers: dict[str, Any] = field(default_factory=dict)
    accession_number: str = ""  # kept apart from `headers`: never logged
    warnings: list[str] = field(default_factory=list)


SERIES_HEADER_KEYWORDS = (
    "Modality", "SOPClassUID", "SeriesDescription", "ProtocolName", "SequenceName",
    "ImageType", "ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType",
    "RepetitionTime", "EchoTime", "InversionTime", "FlipAngle", "EchoTrainLength",
    "ContrastBolusAgent", "ContrastBolusIngredient", "BodyPartExamined", "Manufacturer",
    "ManufacturerModelName", "MagneticFieldStrength", "PatientPosition", "SliceThickness",
    "SpacingBetweenSlices", "FrameOfReferenceUID", "StudyDescription", "DiffusionBValue",
)


PIXEL_FORMAT_KEYWORDS = ("Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "BitsAllocated",
                         "BitsStored", "PixelRepresentation")


def _enhanced_timing(ds: Any, out: dict[str, Any]) -> None:
    """TR, TE, TI and contrast use of an enhanced MR file, from its functional groups."""
    groups = [g for g in ((ds.get("PerFrameFunctionalGroupsSequence") or [None])[0],
                          first_item(ds, "SharedFunctionalGroupsSequence")) if g is not None]
    found = {
        "RepetitionTime": group_value(groups, "MRTimingAndRelatedParametersSequence",
                                       "RepetitionTime"),
        "EchoTime": group_value(groups, "MREchoSequence", "EffectiveEchoTime"),
        "InversionTime": group_value(groups, "MRModifierSequence", "InversionTimes"),
    }
    for kw, value in found.items():
        if kw not in out and value is not None:
            v = as_float(as_strings(value)[0]) if as_strings(value) else None
            if v is not None:
                out[kw] = v
    if "ContrastBolusAgent" not in out:
        usage = group_value(groups, "ContrastBolusUsageSequence", "ContrastBolusAgentAdministered")
        if str(usage or "").upper() == "YES":
            out["ContrastBolusAgent"] = "administered (ContrastBolusUsageSequence)"


def series_headers(ds: Any) -> dict[str, Any]:
    """Headers later stages need, as plain JSON-able values (no patient identifiers)."""
    out: dict[str, Any] = {}
    for kw in SERIES_HEADER_KEYWORDS:
        value = ds.get(kw)
        if value is None or value == "":
            continue
        if type(value).__name__ == "MultiValue" or isinstance(value, (list, tuple)):
            out[kw] = [str(v) for v in value]
        elif isinstance(value, (int, float, str)):
            out[kw] = value if not hasattr(value, "original_string") else as_float(value)
        else:
            out[kw] = str(value)
    if "SharedFunctionalGroupsSequence" in ds or "PerFrameFunctionalGroupsSequence" in ds:
        _enhanced_timing(ds, out)
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts:
        out["TransferSyntaxUID"] = str(ts)
    for kw in PIXEL_FORMAT_KEYWORDS:
        value = as_int(ds.get(kw))
        if value is not None:
            out[kw] = value
    return out


def declared_frames(ds: Any) -> int:
    """NumberOfFrames as the largest value any reader could take from the header.

    The element is read both as text (IS, what the standard says) and as pydicom converts it
    (a file may encode it with another VR, e.g. US): the size checks must hold for whichever
    value a decoder later uses. 1 when absent; a non-positive value is returned as it is.
    """
    values = []
    text = RawHeader(ds).integer("NumberOfFrames")
    if text is not None:
        values.append(text)
    try:
        converted = as_int(ds.get("NumberOfFrames"))
    except Exception:  # noqa: BLE001 - an unconvertible value counts as absent here
        converted = None
    if converted is not None:
        values.append(converted)
    if not values:
        return 1
    return min(values) if min(values) <= 0 else max(values)


def _check_size(ds: Any, path: Path, limits: Any) -> None:
    """Refuse absurd declared sizes before any pixel is read or allocated."""
    raw = RawHeader(ds)
    rows, cols = raw.us("Rows"), raw.us("Columns")
    if rows is None or cols is None:
        return
    frames = declared_frames(ds)
    samples = raw.us("SamplesPerPixel") or 1
    bits = raw.us("BitsAllocated") or 16
    if rows <= 0 or cols <= 0 or frames <= 0:
        raise UnreadableFileError(f"{path}: impossible image size Rows={rows} Columns={cols} "
                                  f"NumberOfFrames={frames}")
    if max(rows, cols) > limits.max_matrix or frames > limits.max_frames_per_file:
        raise ResourceLimitError(
            f"{path}: refused, declared size Rows={rows} Columns={cols} NumberOfFrames={frames} "
            f"exceeds limits (matrix {limits.max_matrix}, frames {limits.max_frames_per_file})")
    nbytes = rows * cols * frames * samples * max(bits, 8) // 8
    if nbytes > limits.max_pixel_bytes_per_file:
        raise ResourceLimitError(
            f"{path}: refused, declared pixel data {nbytes} bytes exceeds the limit "
            f"{limits.max_pixel_bytes_per_file}")
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if ts in UNCOMPRESSED_SYNTAXES and path.stat().st_size < nbytes:
        raise UnreadableFileError(
            f"{path}: truncated, file holds {path.stat().st_size} bytes but declares "
            f"{nbytes} bytes of pixel data")
    # Encapsulated pixel data: every frame is at least one fragment with an 8-byte item header.
    if ts not in UNCOMPRESSED_SYNTAXES and path.stat().st_size < 8 * frames:
        raise UnreadableFileError(
            f"{path}: truncated, file holds {path.stat().st_size} bytes, too few for the "
            f"{frames} compressed frames it declares")


def _mosaic_tiles(ds: Any) -> tuple[int, np.ndarray] | None:
    """(number of tiles, CSA slice normal) for a Siemens mosaic, None if not a mosaic."""
    if "MOSAIC" not in [t.upper() for t in as_strings(ds.get("ImageType"))]:
        return None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nibabel.nicom import csareader

        try:
            csa = csareader.get_csa_header(ds, "image")
            n = csareader.get_n_mosaic(csa) if csa else None
            normal = csareader.get_slice_normal(csa) if csa else None
        except Exception:  # malformed private header: refuse below
            n, normal = None, None
    if not n or normal is None:
        raise UnreadableFileError(
            "Siemens mosaic without a readable CSA header (NumberOfImagesInMosaic / "
            "SliceNormalVector): refused, slices cannot be placed")
    return int(n), np.asarray(normal, dtype=float)


def rescale(value: Any, keyword: str, default: float, zero_ok: bool) -> float:
    """A RescaleSlope / RescaleIntercept value: `default` when absent; an error when present but
    not a finite number, or 0 where `zero_ok` is false (a slope of 0 makes an image of one
    value). Read as 1.0 / 0.0 instead, a corrupt header would give unscaled intensities that
    look plausible."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    first = as_strings(value)[:1]
    number = as_float(first[0]) if first else None
    if number is None or (number == 0.0 and not zero_ok):
        raise UnreadableFileError(f"{keyword} {str(value)[:20]!r} is not a usable number: refused")
    return number


def classic_records(ds: Any, path: Path, base: dict[str, Any]) -> list[FrameRecord]:
    """Records of a single-frame file (one, or one per tile for a Siemens mosaic)."""
    raw = RawHeader(ds)
    slope = rescale(raw.strings("RescaleSlope") or None, "RescaleSlope", 1.0, zero_ok=False)
    intercept = rescale(raw.strings("RescaleIntercept") or None, "RescaleIntercept", 0.0,
                        zero_ok=True)
    image_type = tuple(t.upper() for t in raw.strings("ImageType"))
    rec = FrameRecord(
        path=path, frame=0, rows=raw.us("Rows") or 0, columns=raw.us("Columns") or 0,
        iop=raw.numbers("ImageOrientationPatient", 6),
        ipp=raw.numbers("ImagePositionPatient", 3),  # type: ignore[arg-type]
        pixel_spacing=raw.numbers("PixelSpacing", 2),  # type: ignore[arg-type]
        slice_thickness=raw.number("SliceThickness"),
        spacing_between_slices=raw.number("SpacingBetweenSlices"),
        echo_number=raw.integer("EchoNumbers"), echo_time=raw.number("EchoTime"),
        acquisition_number=raw.integer("AcquisitionNumber"),
        temporal_index=raw.integer("TemporalPositionIdentifier"), image_type=image_type,
        slope=slope, intercept=intercept,
        bvalue=raw.number("DiffusionBValue"), **base)
    mosaic = _mosaic_tiles(ds) if "MOSAIC" in image_type else None
    if mosaic is None:
        return [rec]
    n, normal = mosaic
    size = math.ceil(math.sqrt(n))
    if rec.rows % size or rec.columns % size or rec.iop is None or rec.ipp is None \
            or rec.pixel_spacing is None:
        raise UnreadableFileError(f"{path}: Siemens mosaic with {n} tiles does not fit a "
                                  f"{size}x{size} grid of {rec.rows}x{rec.columns}: refused")
    tile_r, tile_c = rec.rows // size, rec.columns // size
    iop = np.asarray(rec.iop)
    row_dir, col_dir = iop[:3], iop[3:]
    ps_row, ps_col = rec.pixel_spacing
    # IPP of a mosaic is the top-left of the whole mosaic; move it to the first tile's corner.
    ipp0 = (np.asarray(rec.ipp) + col_dir * ps_row * (rec.rows - tile_r) / 2
            + row_dir * ps_col * (rec.columns - tile_c) / 2)
    step = rec.spacing_between_slices or rec.slice_thickness
    if not step:
        raise UnreadableFileError(f"{path}: Siemens mosaic without SpacingBetweenSlices or "
                                  "SliceThickness: refused, slices cannot be placed")
    out = []
    for k in range(n):
        pos = ipp0 + k * step * normal
        out.append(FrameRecord(**{**rec.__dict__, "frame": k, "rows": tile_r, "columns": tile_c,
                                  "ipp": tuple(float(v) for v in pos), "mosaic": n}))
    return out


def enhanced_records(ds: Any, path: Path, base: dict[str, Any]) -> list[FrameRecord]:
    """Records of an enhanced multi-frame file, one per frame, from its functional groups."""
    shared = first_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    n = declared_frames(ds)  # the value _check_size bounded
    if len(per_frame) not in (0, n):
        raise UnreadableFileError(f"{path}: PerFrameFunctionalGroupsSequence has "
                                  f"{len(per_frame)} items for {n} frames")
    out = []
    for f in range(n):
        groups = [g for g in ((per_frame[f] if per_frame else None), shared) if g is not None]

        def gv(seq_kw: str, kw: str) -> Any:
            return group_value(groups, seq_kw, kw)

        content = first_item(per_frame[f], "FrameContentSequence") if per_frame else None
        ftype = gv("MRImageFrameTypeSequence", "FrameType") or ds.get("ImageType")
        out.append(FrameRecord(
            path=path, frame=f, rows=as_int(ds.get("Rows")) or 0, columns=as_int(ds.get("Columns")) or 0,
            iop=as_vector(gv("PlaneOrientationSequence", "ImageOrientationPatient"), 6),
            ipp=as_vector(gv("PlanePositionSequence", "ImagePositionPatient"), 3),  # type: ignore[arg-type]
            pixel_spacing=as_vector(gv("PixelMeasuresSequence", "PixelSpacing"), 2),  # type: ignore[arg-type]
            slice_thickness=as_float(gv("PixelMeasuresSequence", "SliceThickness")),
            spacing_between_slices=as_float(gv("PixelMeasuresSequence", "SpacingBetweenSlices")
                                        or ds.get("SpacingBetweenSlices")),
            echo_number=None,
            echo_time=as_float(gv("MREchoSequence", "EffectiveEchoTime")),
            acquisition_number=as_int(ds.get("AcquisitionNumber")),
            temporal_index=as_int(content.get("TemporalPositionIndex")) if content else None,
            image_type=tuple(t.upper() for t in as_strings(ftype)),
            slope=rescale(gv("PixelValueTransformationSequence", "RescaleSlope"), "RescaleSlope",
                          1.0, zero_ok=False),
            intercept=rescale(gv("PixelValueTransformationSequence", "RescaleIntercept"),
                              "RescaleIntercept", 0.0, zero_ok=True),
            bvalue=as_float(gv("MRDiffusionSequence", "DiffusionBValue")), **base))
    return out


def file_header(ds: Any, path: Path, limits: Any, file_order: int = 0,
                with_headers: bool = True) -> FileHeader:
    """Frame records and series headers of one parsed (header-only) DICOM dataset.

    Raises:
        UnreadableFileError: essential attributes missing or inconsistent.
        ResourceLimitError: declared sizes beyond the configured limits.
    """
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if not RawHeader(ds).text(kw):
            raise UnreadableFileError(f"{path}: DICOM file without {kw}")
    if "PixelData" not in ds and RawHeader(ds).us("Rows") is None:
        raise UnreadableFileError(f"{path}: DICOM object without an image "
                                  f"(SOPClassUID {ds.get('SOPClassUID', '?')})")
    _check_size(ds, path, limits)
    raw = RawHeader(ds)
    base = dict(sop_instance_uid=raw.text("SOPInstanceUID"),
                study_instance_uid=raw.text("StudyInstanceUID"),
                series_instance_uid=raw.text("SeriesInstanceUID"),
                series_number=raw.integer("SeriesNumber"),
                instance_number=raw.integer("InstanceNumber"), file_order=file_order)
    try:
        if raw.text("SOPClassUID") == ENHANCED_MR or "PerFrameFunctionalGroupsSequence" in ds:
            records = enhanced_records(ds, path, base)
        else:
            records = classic_records(ds, path, base)
    except UnreadableFileError as exc:
        msg = str(exc)
        raise UnreadableFileError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    if not with_headers:  # another file of this series already gave the series headers
        return FileHeader(path=path, records=records)
    headers = series_headers(ds)
    if not headers.get("ImageType") and records and records[0].image_type:
        headers["ImageType"] = list(records[0].image_type)
    return FileHeader(path=path, records=records, headers=headers,
                      accession_number=str(ds.get("AccessionNumber", "") or ""))
