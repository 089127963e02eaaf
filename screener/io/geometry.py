"""Slice geometry: sort 2D images along the slice normal, detect irregular grids, build the affine.

The affine maps voxel (i, j, k) to RAS+ mm: i runs along a row (ImageOrientationPatient[:3],
column spacing PixelSpacing[1]), j down a column (ImageOrientationPatient[3:], row spacing
PixelSpacing[0]), k along the sorted slices; DICOM's LPS is turned into RAS by negating x, y.
Irregularities are reported as warnings ("code: detail"), never silently repaired.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from screener.io.records import FrameRecord
from screener.io.settings import IOConfig

RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Grid:
    """Sorted frames of one series split and what the headers say about its geometry."""

    frames: list[FrameRecord]  # slices fastest, then volumes
    n_slices: int
    n_volumes: int
    affine: np.ndarray | None  # 4x4 RAS, None when there is no usable geometry
    voxel_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    slice_spacing_mm: float | None = None  # centre-to-centre distance along the slice normal
    warnings: list[str] = field(default_factory=list)
    loadable: bool = True  # False when the warnings make a regular volume impossible


def _sort_key_volume(r: FrameRecord) -> tuple:
    def opt(v: float | int | None) -> tuple[bool, float]:
        return (v is None, float(v) if v is not None else 0.0)

    return (opt(r.temporal_index), opt(r.acquisition_number), opt(r.bvalue),
            opt(r.instance_number), r.file_order, r.frame)


def orientation_code(affine: np.ndarray) -> str:
    """Axis codes such as "RAS" or "LPI" (where each voxel axis points most)."""
    import nibabel.orientations as nio

    return "".join(c or "?" for c in nio.aff2axcodes(affine))  # None: a degenerate axis


def build_grid(frames: list[FrameRecord], cfg: IOConfig) -> Grid:
    """Sort `frames` (one split of a series) into slices x volumes and derive its affine."""
    warnings: list[str] = []
    ref = frames[0]
    if any(r.iop is None or r.ipp is None or r.pixel_spacing is None for r in frames):
        ordered = sorted(frames, key=_sort_key_volume)
        return Grid(ordered, len(ordered), 1, None, warnings=[
            "no_geometry: ImageOrientationPatient, ImagePositionPatient or PixelSpacing missing"],
            loadable=False)
    iops = np.array([r.iop for r in frames], dtype=float)
    iop_dev = float(np.max(np.abs(iops - iops[0])))
    loadable = True
    if iop_dev > cfg.orientation_tolerance:
        warnings.append(f"inconsistent_orientation: ImageOrientationPatient varies by up to "
                        f"{iop_dev:.4f} within the series")
        loadable = False
    row_dir, col_dir = np.array(ref.iop[:3]), np.array(ref.iop[3:])
    if abs(np.linalg.norm(row_dir) - 1) > 0.01 or abs(np.linalg.norm(col_dir) - 1) > 0.01 \
            or abs(float(np.dot(row_dir, col_dir))) > 0.01:
        return Grid(frames, len(frames), 1, None, warnings=warnings + [
            "no_geometry: ImageOrientationPatient is not two orthonormal directions"],
            loadable=False)
    ps_row, ps_col = ref.pixel_spacing  # type: ignore[misc]
    if ps_row <= 0 or ps_col <= 0:
        return Grid(frames, len(frames), 1, None,
                    warnings=warnings + ["no_geometry: PixelSpacing is not positive"],
                    loadable=False)
    normal = np.cross(row_dir, col_dir)
    dist = np.array([float(np.dot(r.ipp, normal)) for r in frames])  # type: ignore[arg-type]

    # Cluster positions along the normal: a position may hold several volumes.
    order = np.argsort(dist, kind="stable")
    positions: list[list[int]] = []
    for idx in order:
        if positions and abs(dist[idx] - dist[positions[-1][0]]) <= cfg.position_tolerance_mm:
            positions[-1].append(int(idx))
        else:
            positions.append([int(idx)])
    counts = {len(p) for p in positions}
    n_slices = len(positions)
    if len(counts) == 1:
        n_volumes = counts.pop()
    else:
        n_volumes = max(len(p) for p in positions)
        warnings.append(f"duplicate_positions: {sum(len(p) for p in positions)} images at "
                        f"{n_slices} positions, unequal counts per position "
                        f"({min(len(p) for p in positions)}..{n_volumes})")
        loadable = False
    if n_volumes > 1 and loadable:
        warnings.append(f"multi_volume: {n_volumes} volumes of {n_slices} slices")
    by_pos = [sorted((frames[i] for i in p), key=_sort_key_volume) for p in positions]
    ordered = [by_pos[k][t] for t in range(min(len(p) for p in by_pos)) for k in range(n_slices)]
    if not loadable:
        ordered = [r for p in by_pos for r in p]

    first = np.array(by_pos[0][0].ipp)
    if n_slices > 1:
        last = np.array(by_pos[-1][0].ipp)
        diffs = np.diff([dist[p[0]] for p in positions])
        median = float(np.median(diffs))
        big = diffs > cfg.missing_slice_factor * median
        if np.any(big):
            missing = int(round(float(np.sum(diffs[big] / median - 1))))
            warnings.append(f"missing_slices: about {missing} slice(s) missing "
                            f"(gaps up to {float(diffs.max()):.2f} mm where spacing is {median:.2f} mm)")
            loadable = False
        step = (last - first) / (n_slices - 1)
        expected = first + np.outer(np.arange(n_slices), step)
        actual = np.array([by_pos[k][0].ipp for k in range(n_slices)])
        resid = float(np.max(np.linalg.norm(actual - expected, axis=1)))
        if resid > cfg.position_tolerance_mm and not np.any(big):
            warnings.append(f"uneven_spacing: slice positions deviate up to {resid:.3f} mm from a "
                            f"regular grid (spacing {float(diffs.min()):.3f}..{float(diffs.max()):.3f} mm)")
            loadable = False
        spacing = abs(float(np.dot(step, normal)))
        if spacing <= 1e-6:
            return Grid(ordered, n_slices, n_volumes, None, warnings=warnings + [
                "no_geometry: slice positions do not advance along the slice normal"],
                loadable=False)
        tilt = math.degrees(math.acos(min(1.0, spacing / float(np.linalg.norm(step)))))
        if tilt > cfg.gantry_tilt_tolerance_deg:
            warnings.append(f"gantry_tilt: slices are stacked {tilt:.2f} degrees off the slice "
                            "normal (sheared affine, not resampled)")
    else:
        spacing = ref.spacing_between_slices or ref.slice_thickness or 1.0
        step = normal * spacing
    lps = np.eye(4)
    lps[:3, 0] = row_dir * ps_col
    lps[:3, 1] = col_dir * ps_row
    lps[:3, 2] = step
    lps[:3, 3] = first
    affine = RAS_FROM_LPS @ lps
    voxel = (float(ps_col), float(ps_row), float(np.linalg.norm(step)))
    if max(voxel) > cfg.max_voxel_mm:
        warnings.append(f"absurd_size: voxel {voxel[0]:.3g} x {voxel[1]:.3g} x {voxel[2]:.3g} mm "
                        f"exceeds {cfg.max_voxel_mm} mm")
    if min(voxel) < cfg.min_voxel_mm:
        warnings.append(f"absurd_size: voxel {voxel[0]:.3g} x {voxel[1]:.3g} x {voxel[2]:.3g} mm "
                        f"below {cfg.min_voxel_mm} mm")
        loadable = False
    return Grid(ordered, n_slices, n_volumes, affine, voxel, float(spacing), warnings, loadable)
