"""Group DICOM frame records into studies and series, splitting mixed series.

One SeriesInstanceUID can hold several volumes that must not be stacked together: different
planes (a 3-plane localizer), matrix sizes, echoes (dual-echo T2/PD), image types (magnitude and
phase), series numbers, or acquisitions covering different slabs. Each such part becomes its own
SeriesInfo whose `split_key` says why, with a `mixed_series` warning.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from typing import Any

import numpy as np

from screener.io.geometry import Grid, build_grid, orientation_code
from screener.io.records import FileHeader, FrameRecord
from screener.io.results import FileError
from screener.io.settings import IOConfig
from screener.types import SeriesInfo, Study

log = logging.getLogger(__name__)


def short_hash(text: str, n: int = 8) -> str:
    """Short stable hash for logs and names (never log identifiers themselves)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:n]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple):
        return "\\".join(_fmt(x) for x in v)
    return str(v)


def _split_key(r: FrameRecord, planes: list[np.ndarray], cfg: IOConfig) -> tuple:
    """(name, value) pairs that must agree for images to form one volume."""
    plane = "none"
    if r.iop is not None:
        iop = np.asarray(r.iop)
        for ref in planes:
            if np.max(np.abs(iop - ref)) <= cfg.orientation_split_tolerance:
                break
        else:
            planes.append(iop)
            ref = iop
        plane = "\\".join(f"{v:.2f}" for v in ref)
    spacing = tuple(round(v, 3) for v in r.pixel_spacing) if r.pixel_spacing else None
    te = round(r.echo_time, 2) if r.echo_time is not None else None
    return (("SeriesNumber", r.series_number), ("ImageOrientationPatient", plane),
            ("Rows", r.rows), ("Columns", r.columns), ("PixelSpacing", spacing),
            ("EchoNumbers", r.echo_number), ("EchoTime", te), ("ImageType", r.image_type))


def _describe(key: tuple, others: list[tuple]) -> str:
    """The fields of `key` that differ from any other part, as "Name=value,..."."""
    diffs = [f"{name}={_fmt(v)}" for i, (name, v) in enumerate(key)
             if any(o[i][1] != v for o in others)]
    return ",".join(diffs)


def _split_by_acquisition(frames: list[FrameRecord], cfg: IOConfig) -> list[list[FrameRecord]]:
    """Parts by AcquisitionNumber when the series holds slabs that do not form one grid."""
    parts: dict[Any, list[FrameRecord]] = defaultdict(list)
    for r in frames:
        parts[r.acquisition_number].append(r)
    if len(parts) < 2:
        return [frames]
    grids = [build_grid(p, cfg) for p in parts.values()]
    if not all(g.loadable and g.n_volumes == 1 and g.affine is not None for g in grids):
        return [frames]
    # Same slices in every acquisition: repeated volumes (4D), kept together.
    if all(g.n_slices == grids[0].n_slices and np.allclose(g.affine, grids[0].affine, atol=cfg.position_tolerance_mm)
           for g in grids):
        return [frames]
    whole = build_grid(frames, cfg)
    if whole.loadable and whole.n_volumes == 1:
        return [frames]  # acquisitions are parts of one regular stack (e.g. one per slice)
    return list(parts.values())


def _series_info(study_uid: str, series_uid: str, frames: list[FrameRecord], grid: Grid,
                 head: FileHeader, split_key: str, n_parts: int) -> SeriesInfo:
    files: list[Any] = []
    file_index: dict[Any, int] = {}
    sops: list[str] = []
    refs: list[tuple[int, int]] = []
    rescale: list[tuple[float, float]] = []
    for r in grid.frames:
        if r.path not in file_index:
            file_index[r.path] = len(files)
            files.append(r.path)
            sops.append(r.sop_instance_uid)
        refs.append((file_index[r.path], r.frame))
        rescale.append((r.slope, r.intercept))
    ref = grid.frames[0]
    headers = dict(head.headers)
    if ref.echo_time is not None:
        headers["EchoTime"] = ref.echo_time
    if ref.echo_number is not None:
        headers["EchoNumbers"] = ref.echo_number
    headers["ImageType"] = list(ref.image_type) or headers.get("ImageType", [])
    warnings = list(grid.warnings)
    for w in head.warnings:
        if w not in warnings:
            warnings.append(w)
    slopes = {(r.slope, r.intercept) for r in frames}
    if len(slopes) > 1:
        warnings.append(f"rescale: RescaleSlope/RescaleIntercept differ between images "
                        f"({len(slopes)} pairs), applied per image")
    if ref.mosaic:
        headers["mosaic_tiles"] = ref.mosaic
        warnings.append(f"mosaic: Siemens mosaic of {ref.mosaic} tiles unpacked into slices")
    uid = series_uid
    if n_parts > 1:
        warnings.append(f"mixed_series: SeriesInstanceUID split into {n_parts} parts ({split_key})")
        uid = series_uid  # the DICOM UID stays; split_key tells the parts apart
    shape: tuple[int, ...] = (ref.columns, ref.rows, grid.n_slices)
    if grid.n_volumes > 1:
        shape = shape + (grid.n_volumes,)
    thickness = ref.slice_thickness
    gap = None
    if thickness is not None and grid.slice_spacing_mm is not None and grid.n_slices > 1:
        gap = round(grid.slice_spacing_mm - thickness, 4)
    info = SeriesInfo(
        study_instance_uid=study_uid, series_instance_uid=uid,
        series_description=str(headers.get("SeriesDescription", "")),
        modality=str(headers.get("Modality", "")), body_part=str(headers.get("BodyPartExamined", "")),
        accession_number=head.accession_number, series_number=ref.series_number,
        source="dicom", source_files=files, sop_class_uid=str(headers.get("SOPClassUID", "")),
        sop_instance_uids=sops, voxel_mm=grid.voxel_mm, slice_thickness_mm=thickness,
        slice_gap_mm=gap, orientation=orientation_code(grid.affine) if grid.affine is not None else "",
        split_key=split_key, warnings=warnings, headers=headers, shape=shape,
        affine=grid.affine.tolist() if grid.affine is not None else None, frames=refs,
        rescale=rescale)
    info.headers["loadable"] = grid.loadable
    info.headers["n_files"] = len(files)
    return info


def _too_big(info: SeriesInfo, cfg: IOConfig) -> None:
    n = int(np.prod(info.shape)) if info.shape else 0
    if n > cfg.max_voxels_per_series:
        info.warnings.append(f"absurd_size: {n} voxels exceed the limit {cfg.max_voxels_per_series}")
        info.headers["loadable"] = False


def group_studies(headers: list[FileHeader], cfg: IOConfig,
                  errors: list[FileError] | None = None) -> list[Study]:
    """Studies with their series (split where mixed), sorted by SeriesNumber.

    A series that cannot be assembled (an unforeseen failure in splitting or placing its
    slices) is left out with an error record in `errors` (raised when `errors` is None), so
    one such series never costs the other series and studies of the input.
    """
    head_of: dict[str, FileHeader] = {}  # series UID -> the file that gave the series headers
    for h in headers:
        if h.headers and h.records:
            head_of.setdefault(h.records[0].series_instance_uid, h)
    by_series: dict[tuple[str, str], list[FrameRecord]] = defaultdict(list)
    dup_warn: dict[tuple[str, str], int] = defaultdict(int)
    seen: set[tuple[str, int]] = set()
    for h in headers:
        for r in h.records:
            key = (r.study_instance_uid, r.series_instance_uid)
            if (r.sop_instance_uid, r.frame) in seen:
                dup_warn[key] += 1  # the same SOP instance twice (a copied file): read once
                continue
            seen.add((r.sop_instance_uid, r.frame))
            by_series[key].append(r)
    studies: dict[str, Study] = {}
    for (study_uid, series_uid), frames in by_series.items():
        try:
            built = _build_series(study_uid, series_uid, frames, head_of, dup_warn, cfg)
        except Exception as exc:
            if errors is None:
                raise
            log.warning("series %s not assembled: %s", short_hash(series_uid), type(exc).__name__)
            errors.append(FileError(str(frames[0].path), f"series of {len(frames)} frames could "
                                    f"not be assembled ({type(exc).__name__}); not used",
                                    "SeriesReadError"))
            continue
        for info in built:
            study = studies.setdefault(study_uid, Study(study_instance_uid=study_uid,
                                                        accession_number=info.accession_number))
            study.series.append(info)
    for study in studies.values():
        study.series.sort(key=lambda s: (s.series_number is None, s.series_number or 0, s.split_key))
    return list(studies.values())


def _build_series(study_uid: str, series_uid: str, frames: list[FrameRecord],
                  head_of: dict[str, FileHeader], dup_warn: dict[tuple[str, str], int],
                  cfg: IOConfig) -> list[SeriesInfo]:
    """The SeriesInfo(s) of one SeriesInstanceUID, split where it mixes planes or acquisitions."""
    planes: list[np.ndarray] = []
    parts: dict[tuple, list[FrameRecord]] = defaultdict(list)
    for r in frames:
        parts[_split_key(r, planes, cfg)].append(r)
    pieces: list[tuple[str, list[FrameRecord]]] = []
    out: list[SeriesInfo] = []
    keys = list(parts)
    for key in keys:
        others = [k for k in keys if k != key]
        label = _describe(key, others) if others else ""
        sub = _split_by_acquisition(parts[key], cfg)
        for s in sub:
            lab = label
            if len(sub) > 1:
                lab = ",".join(x for x in (label, f"AcquisitionNumber={s[0].acquisition_number}") if x)
            pieces.append((lab, s))
    for label, part in pieces:
        grid = build_grid(part, cfg)
        info = _series_info(study_uid, series_uid, part, grid, head_of.get(series_uid) or FileHeader(part[0].path, []), label,
                            len(pieces))
        if dup_warn.get((study_uid, series_uid)):
            info.warnings.append(f"duplicate_positions: {dup_warn[(study_uid, series_uid)]} "
                                 "repeated copies of the same SOP instance ignored")
        _too_big(info, cfg)
        out.append(info)
    return out
