"""Quality checks: can this series / study / brain mask / image be assessed at all?

Every check returns a list of reasons; an empty list means "no objection". A reason is a short
human-readable string starting with a stable code, e.g.
``"thickness_above_limit: 9.0 mm > 7.0 mm"``, so tools can group on the code (text before the
first colon) and people can read the rest. Any reason at study level makes the study
`indeterminate` (see screener.decide); a series with reasons is not used.

Limits live in the ``qc:`` section of configs/default.yaml.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from screener.config import load_config, section
from screener.metrics import mad_sd
from screener.types import SeriesInfo, Study


@dataclass(frozen=True)
class QCConfig:
    """The ``qc:`` section (values and meaning in configs/default.yaml)."""

    blocking_warnings: list[str]
    max_slice_thickness_mm: float
    max_slice_gap_mm: float
    max_inplane_voxel_mm: float
    min_slices: int
    min_coverage_mm: float
    head_body_parts: list[str]
    brain_volume_ml: list[float]
    max_brain_cut_area_cm2: float
    min_cnr: float

    def __post_init__(self) -> None:
        if len(self.brain_volume_ml) != 2 or self.brain_volume_ml[0] >= self.brain_volume_ml[1]:
            raise ValueError("qc.brain_volume_ml must be [low, high] with low < high")


def qc_config(cfg: QCConfig | Mapping[str, Any] | None = None) -> QCConfig:
    """The QC settings from a whole config mapping (default: configs/default.yaml)."""
    if isinstance(cfg, QCConfig):
        return cfg
    return section(dict(cfg) if cfg is not None else load_config(), "qc", QCConfig)


def _code(text: str) -> str:
    return text.split(":", 1)[0].strip()


def _norm_body_part(text: str) -> str:
    return text.strip().upper().replace("-", "_")


def through_plane_mm(info: SeriesInfo) -> float:
    """Effective through-plane resolution: the larger of SliceThickness and slice spacing."""
    spacing = float(info.voxel_mm[2])
    thickness = info.slice_thickness_mm if info.slice_thickness_mm is not None else spacing
    return max(float(thickness), spacing)


def series_reasons(
    info: SeriesInfo,
    cfg: QCConfig | Mapping[str, Any] | None = None,
    shape: Sequence[int] | None = None,
) -> list[str]:
    """Why this series cannot be assessed (empty list: usable).

    Args:
        info: the series' header facts (voxel_mm is along the volume axes i, j, k; k is the
            slice axis, as built by screener.io).
        cfg: QCConfig or a whole config mapping.
        shape: the volume's shape; when omitted ``info.shape`` (from io) is used, then the
            SOP instance count; an unknown slice count is itself a reason (fail closed).

    Returns:
        Reasons, each starting with a stable code.
    """
    c = qc_config(cfg)
    reasons: list[str] = []
    if info.modality.upper() != "MR":
        reasons.append(f"not_mr: modality {info.modality or 'missing'}")
    if not info.sequence.structural:
        reasons.append(f"non_structural_sequence: {info.sequence.value}")
    if info.body_part and _norm_body_part(info.body_part) not in {
            _norm_body_part(b) for b in c.head_body_parts}:
        reasons.append(f"body_part_not_head: {info.body_part}")
    blocking = set(c.blocking_warnings)
    for warning in info.warnings:
        if _code(warning) in blocking:
            reasons.append(warning if ":" in warning else f"{warning}: reported by ingestion")

    vox = [float(v) for v in info.voxel_mm]
    if len(vox) != 3 or not all(math.isfinite(v) and v > 0 for v in vox):
        reasons.append(f"no_geometry: voxel size {info.voxel_mm}")
        return reasons
    through = through_plane_mm(info)
    if through > c.max_slice_thickness_mm:
        reasons.append(f"thickness_above_limit: {through:.1f} mm > {c.max_slice_thickness_mm:.1f} mm")
    if info.slice_gap_mm is not None and info.slice_gap_mm > c.max_slice_gap_mm:
        reasons.append(f"slice_gap_above_limit: {info.slice_gap_mm:.1f} mm > {c.max_slice_gap_mm:.1f} mm")
    inplane = max(vox[0], vox[1])
    if inplane > c.max_inplane_voxel_mm:
        reasons.append(f"inplane_too_coarse: {inplane:.2f} mm > {c.max_inplane_voxel_mm:.2f} mm")

    if shape is None and info.shape:
        shape = info.shape
    if shape is not None:
        if len(shape) == 4 and shape[3] > 1 and not any(
                _code(r) == "multi_volume" for r in reasons):
            reasons.append(f"multi_volume: {shape[3]} volumes in one series")
        n_slices: int | None = int(shape[2]) if len(shape) >= 3 else None
    else:
        n_slices = len(info.sop_instance_uids) or None
    if n_slices is None:
        reasons.append("no_geometry: number of slices unknown")
        return reasons
    if n_slices < c.min_slices:
        reasons.append(f"too_few_slices: {n_slices} < {c.min_slices}")
    coverage = n_slices * vox[2]
    if coverage < c.min_coverage_mm:
        reasons.append(f"coverage_too_small: {coverage:.0f} mm < {c.min_coverage_mm:.0f} mm along the slice axis")
    return reasons


def study_reasons(
    study: Study,
    per_series: Sequence[Sequence[str]] | None = None,
    cfg: QCConfig | Mapping[str, Any] | None = None,
) -> list[str]:
    """Why the study as a whole cannot be assessed (empty list: go on).

    Args:
        study: the study with its series.
        per_series: series_reasons() of each series of ``study.series`` in the same order
            (computed without shapes when omitted).
        cfg: QCConfig or a whole config mapping.
    """
    c = qc_config(cfg)
    if not study.series:
        return ["no_series: the study holds no image series"]
    if per_series is None:
        per_series = [series_reasons(s, c) for s in study.series]
    if len(per_series) != len(study.series):
        raise ValueError("per_series must hold one reason list per series")
    reasons: list[str] = []
    modalities = sorted({s.modality.upper() or "missing" for s in study.series})
    if "MR" not in modalities:
        reasons.append(f"not_mr: modalities {', '.join(modalities)}")
    heads = {_norm_body_part(b) for b in c.head_body_parts}
    given = sorted({s.body_part for s in study.series if s.body_part})
    if given and not any(_norm_body_part(b) in heads for b in given):
        reasons.append(f"body_part_not_head: {', '.join(given)}")
    if not any(len(r) == 0 for r in per_series):
        codes = sorted({_code(x) for r in per_series for x in r})
        reasons.append(f"no_assessable_series: {len(study.series)} series, none usable ({', '.join(codes)})")
    return reasons


def _voxel_sizes(affine: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)


def face_areas_cm2(mask: npt.NDArray[np.bool_], voxel_sizes: Sequence[float]
                   ) -> list[tuple[int, int, float]]:
    """(axis, end, cm2) for each of the six faces of a 3D mask: its cross-section on the first
    (end -1) and last (end 1) slice along each axis."""
    out = []
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        face_area_mm2 = float(voxel_sizes[others[0]] * voxel_sizes[others[1]])
        for end, index in ((-1, 0), (1, mask.shape[axis] - 1)):
            out.append((axis, end,
                        float(np.take(mask, index, axis=axis).sum()) * face_area_mm2 / 100.0))
    return out


def _face_name(direction: npt.NDArray[np.float64]) -> str:
    """Name of the dominant RAS direction of a world vector (for readable reasons)."""
    names = (("left", "right"), ("posterior", "anterior"), ("inferior", "superior"))
    axis = int(np.argmax(np.abs(direction)))
    return names[axis][int(direction[axis] > 0)]


def brain_reasons(
    brain_mask: npt.ArrayLike,
    affine: npt.ArrayLike,
    cfg: QCConfig | Mapping[str, Any] | None = None,
) -> list[str]:
    """Is the brain mask plausible and the brain fully inside the volume?

    Args:
        brain_mask: boolean (or 0/1) volume on the series grid.
        affine: 4x4 voxel -> RAS mm of that grid.
        cfg: QCConfig or a whole config mapping.

    Returns:
        ``brain_volume_implausible`` when the mask volume is outside the configured range;
        ``brain_cut_off`` for each face of the volume whose brain cross-section exceeds the
        configured area (the brain continues beyond the field of view).
    """
    c = qc_config(cfg)
    mask = np.asarray(brain_mask).astype(bool)
    aff = np.asarray(affine, dtype=np.float64)
    if mask.ndim != 3:
        raise ValueError(f"brain mask must be 3D, got shape {mask.shape}")
    sizes = _voxel_sizes(aff)
    volume_ml = float(mask.sum()) * abs(float(np.linalg.det(aff[:3, :3]))) / 1000.0
    lo, hi = c.brain_volume_ml
    reasons: list[str] = []
    if not lo <= volume_ml <= hi:
        reasons.append(f"brain_volume_implausible: {volume_ml:.0f} ml outside {lo:.0f}-{hi:.0f} ml")
    if not mask.any():
        return reasons
    for axis, end, area_cm2 in face_areas_cm2(mask, sizes):
        if area_cm2 > c.max_brain_cut_area_cm2:
            side = _face_name(end * aff[:3, axis])
            reasons.append(f"brain_cut_off: {area_cm2:.0f} cm2 of brain on the {side} edge "
                           f"of the volume (> {c.max_brain_cut_area_cm2:.0f} cm2)")
    return reasons


def noise_sigma(image: npt.ArrayLike, brain_mask: npt.ArrayLike) -> float:
    """Robust noise sigma inside the brain (NaN when the mask is too small).

    From differences of in-plane neighbours that both lie inside the brain mask eroded by one
    voxel: for white noise var(a - b) = 2 sigma^2, and the median absolute deviation ignores
    the minority of pairs that straddle a tissue edge. Anatomy can only inflate sigma, so the
    estimate errs towards calling an image noisy.
    """
    from scipy import ndimage

    img = np.asarray(image)
    brain = np.asarray(brain_mask).astype(bool)
    if img.shape != brain.shape:
        raise ValueError(f"image {img.shape} and brain mask {brain.shape} differ in shape")
    box = ndimage.find_objects(brain.astype(np.uint8))
    if not box or box[0] is None:
        return float("nan")
    # Crop to the brain and take every other slice: same estimate, a quarter of the work.
    crop = box[0][:2] + (slice(box[0][2].start, box[0][2].stop, 2),)
    img = img[crop].astype(np.float32)
    mask = ndimage.binary_erosion(brain[crop])
    if mask.sum() < 100:
        return float("nan")
    diffs = []
    for axis in (0, 1):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[axis], b[axis] = slice(1, None), slice(None, -1)
        both = mask[tuple(a)] & mask[tuple(b)]
        diffs.append((img[tuple(a)] - img[tuple(b)])[both])
    d = np.concatenate(diffs)
    return mad_sd(d) / math.sqrt(2.0)


def contrast_to_noise(image: npt.ArrayLike, brain_mask: npt.ArrayLike) -> float:
    """Spread of brain intensities (5th to 95th percentile) over the robust noise sigma.

    Offset- and scale-free, so it behaves the same on scanner units, uint8 exports and
    z-scored (skull-stripped) data, where a median-over-sigma SNR is meaningless because the
    brain's median is near 0. Measured on ../shared/realdata-dev (n = 10 images, rough
    threshold brain masks): 12-46 as acquired; 4.5-6.6 after adding Gaussian noise of
    0.3 x that spread. A uniform phantom brain (one intensity plus noise) scores ~3.3: it has
    no tissue contrast to assess.
    """
    sigma = noise_sigma(image, brain_mask)
    if not math.isfinite(sigma):
        return float("nan")
    vals = np.asarray(image)[np.asarray(brain_mask).astype(bool)][::3]
    p5, p95 = np.percentile(vals, [5, 95])
    if sigma <= 0:
        return float("inf")
    return float(p95 - p5) / sigma


def noise_reasons(
    image: npt.ArrayLike,
    brain_mask: npt.ArrayLike,
    cfg: QCConfig | Mapping[str, Any] | None = None,
) -> list[str]:
    """``severe_noise`` when the brain's contrast-to-noise ratio is below the limit."""
    c = qc_config(cfg)
    cnr = contrast_to_noise(image, brain_mask)
    if math.isnan(cnr):
        return ["severe_noise: noise cannot be estimated (brain mask too small)"]
    if cnr < c.min_cnr:
        return [f"severe_noise: contrast-to-noise {cnr:.1f} < {c.min_cnr:.1f}"]
    return []
