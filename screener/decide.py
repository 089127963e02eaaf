"""Findings, study score and decision.

Findings are connected components of ``lesion_prob >= voxel_threshold`` inside the brain mask,
at least ``min_component_ml`` large, measured in world space through the series' affine:
volume (ml), centroid (RAS mm), maximum diameter (mm, anisotropic and oblique voxels handled),
signal (hyper/hypo/mixed against the surrounding normal brain of the same image) and
probability.

Study score (documented contract): for each finding f with probability p_f (its maximum voxel
probability, or mean with ``component_probability: mean``) and volume V_f,

    s_f = p_f * (1 - exp(-V_f / score_volume_scale_ml)),    abnormality_score = max_f s_f

over every used series (0 without findings). It lies in [0, 1] and grows with both the
probability and the size of the strongest finding, so it is comparable across studies; the
calibration (screener.calibrate) maps it to P(abnormal) and fixes the operating threshold.

Decision: ``indeterminate`` when QC gave study-level reasons, no series was used, or the
calibration is missing; otherwise ``flagged`` when score >= threshold, else ``negative`` --
unless there is no resolution claim for the geometry, which turns a would-be negative into
``indeterminate`` (a flag is kept: abnormal signal was seen, and flagging is the safe side).
Confidence = P(decision right): P(abnormal | score) when flagged, 1 - P(abnormal | score) when
negative, None (null) when indeterminate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from screener.config import load_config, section
from screener.types import Decision

if TYPE_CHECKING:
    from screener.calibrate import Calibration


@dataclass(frozen=True)
class DecideConfig:
    """The ``decide:`` section (values and meaning in configs/default.yaml)."""

    voxel_threshold: float
    brain_threshold: float
    connectivity: int
    min_component_ml: float
    component_probability: str
    score_volume_scale_ml: float
    signal_shell_mm: float
    signal_z: float
    mixed_fraction: float
    target_sensitivity: float
    delta: float
    threshold_method: str
    min_size_sensitivity: float
    min_size_n: int
    resolution_aggregate: str
    resolution_contrast: str
    slice_tolerance_mm: float

    def __post_init__(self) -> None:
        if self.connectivity not in (1, 2, 3):
            raise ValueError("decide.connectivity must be 1, 2 or 3")
        if self.component_probability not in ("max", "mean"):
            raise ValueError("decide.component_probability must be max or mean")
        if self.score_volume_scale_ml <= 0:
            raise ValueError("decide.score_volume_scale_ml must be positive")
        if self.resolution_contrast not in ("matched", "pooled"):
            raise ValueError("decide.resolution_contrast must be matched or pooled")


def decide_config(cfg: DecideConfig | Mapping[str, Any] | None = None) -> DecideConfig:
    """The decide settings from a whole config mapping (default: configs/default.yaml)."""
    if isinstance(cfg, DecideConfig):
        return cfg
    return section(dict(cfg) if cfg is not None else load_config(), "decide", DecideConfig)


@dataclass(frozen=True)
class Finding:
    """One connected component of abnormal signal (``label`` indexes SeriesAnalysis.labels)."""

    label: int
    voxels: int
    volume_ml: float
    centroid_ras_mm: tuple[float, float, float]
    max_diameter_mm: float
    signal: str  # "hyperintense" | "hypointense" | "mixed"
    probability: float
    mean_probability: float
    score: float
    series: str
    # The weights' finding verifier's P(lesion) (screener/model/verifier.py); when set it is
    # also the finding's score. None: no verifier shipped or it is switched off.
    verifier_probability: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "volume_ml": round(self.volume_ml, 4),
            "centroid_ras_mm": [round(v, 2) for v in self.centroid_ras_mm],
            "max_diameter_mm": round(self.max_diameter_mm, 2), "signal": self.signal,
            "probability": round(self.probability, 4),
            "mean_probability": round(self.mean_probability, 4),
            "score": round(self.score, 4), "voxels": self.voxels, "label": self.label,
            "series": self.series}
        if self.verifier_probability is not None:
            d["verifier_probability"] = round(self.verifier_probability, 4)
        return d


@dataclass
class SeriesAnalysis:
    """Findings of one analysed series, with the label volume that outlines them."""

    series: str
    findings: list[Finding]
    labels: npt.NDArray[np.int32]  # 0 = background, Finding.label elsewhere
    score: float


def finding_score(probability: float, volume_ml: float, scale_ml: float) -> float:
    """A finding's score s_f = p_f * (1 - exp(-V_f / scale)) (module docstring)."""
    return probability * (1.0 - math.exp(-volume_ml / scale_ml))


def max_diameter_mm(index_points: npt.ArrayLike, affine: npt.ArrayLike) -> float:
    """Largest extent of a voxel set in world mm (Feret diameter), anisotropy and obliquity handled.

    The larger of two lower bounds of the true object's diameter: the largest distance between
    voxel centres in world mm, and the equivalent-sphere diameter (6 V / pi)^(1/3) (by the
    isodiametric inequality no set of volume V has a smaller diameter). The first dominates for
    elongated or large findings (a digitised 12 mm sphere measures 11.5-12 mm on 1-4 mm grids),
    the second for findings of a few voxels, where centre distances say little.
    """
    from scipy.spatial import ConvexHull
    from scipy.spatial.distance import pdist

    aff = np.asarray(affine, dtype=np.float64)
    pts = np.asarray(index_points, dtype=np.float64) @ aff[:3, :3].T
    volume = len(pts) * abs(float(np.linalg.det(aff[:3, :3])))
    d_eq = (6.0 * volume / math.pi) ** (1.0 / 3.0)
    if len(pts) > 64:
        pts = pts[ConvexHull(pts, qhull_options="QJ").vertices]
    dist = float(pdist(pts).max()) if len(pts) > 1 else 0.0
    return max(dist, d_eq)


def _signal(image: npt.NDArray[np.float64], idx: npt.NDArray[np.int64],
            normal: npt.NDArray[np.bool_], spacing: npt.NDArray[np.float64],
            c: DecideConfig) -> str:
    """Hyper/hypo/mixed: component voxels (indices `idx`) vs a shell of normal brain around it."""
    from scipy import ndimage

    pad = np.ceil(c.signal_shell_mm / spacing).astype(int) + 1
    lo = np.maximum(idx.min(0) - pad, 0)
    hi = np.minimum(idx.max(0) + pad + 1, image.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    comp = np.zeros(tuple(int(b - a) for a, b in zip(lo, hi)), dtype=bool)
    comp[tuple((idx - lo).T)] = True
    dist = ndimage.distance_transform_edt(~comp, sampling=spacing)
    shell = (dist > 0) & (dist <= c.signal_shell_mm) & normal[box]
    ref = image[box][shell]
    if ref.size < 10:  # lesion fills its surroundings: compare with all normal brain
        ref = image[normal]
    vals = image[box][comp]
    if ref.size == 0:
        return "mixed"
    med = float(np.median(ref))
    from screener.metrics import robust_sd

    z = (vals - med) / robust_sd(ref)
    hi_frac, lo_frac = float(np.mean(z > c.signal_z)), float(np.mean(z < -c.signal_z))
    if hi_frac >= c.mixed_fraction and lo_frac >= c.mixed_fraction:
        return "mixed"
    return "hyperintense" if float(np.median(vals)) >= med else "hypointense"


def analyse_series(
    lesion_prob: npt.ArrayLike,
    brain_mask: npt.ArrayLike,
    image: npt.ArrayLike,
    affine: npt.ArrayLike,
    series: str,
    cfg: DecideConfig | Mapping[str, Any] | None = None,
) -> SeriesAnalysis:
    """Findings and score of one series (all arrays on the series' own grid).

    Args:
        lesion_prob: abnormality probability per voxel (Prediction.lesion_prob).
        brain_mask: boolean brain mask (e.g. Prediction.brain_prob >= brain_threshold).
        image: the series' intensities, for hyper/hypointense calls.
        affine: 4x4 voxel -> RAS mm.
        series: SeriesInstanceUID (or path) the findings belong to.
        cfg: DecideConfig or a whole config mapping.
    """
    from scipy import ndimage

    c = decide_config(cfg)
    prob = np.asarray(lesion_prob, dtype=np.float32)
    brain = np.asarray(brain_mask).astype(bool)
    img = np.asarray(image, dtype=np.float64)
    aff = np.asarray(affine, dtype=np.float64)
    if not (prob.shape == brain.shape == img.shape) or prob.ndim != 3:
        raise ValueError(f"shapes differ: prob {prob.shape}, brain {brain.shape}, image {img.shape}")
    if not np.all(np.isfinite(prob)):  # a broken prediction must not become a score
        raise ValueError("lesion probabilities contain NaN or infinity")
    prob = np.clip(prob, 0.0, 1.0)
    spacing = np.linalg.norm(aff[:3, :3], axis=0)
    voxel_ml = abs(float(np.linalg.det(aff[:3, :3]))) / 1000.0
    candidate = (prob >= c.voxel_threshold) & brain
    structure = ndimage.generate_binary_structure(3, c.connectivity)
    raw, n = ndimage.label(candidate, structure=structure)
    labels = np.zeros(prob.shape, dtype=np.int32)
    normal = brain & ~candidate
    findings: list[Finding] = []
    objects = ndimage.find_objects(raw)
    for lab in range(1, n + 1):
        box = objects[lab - 1]
        comp_box = raw[box] == lab
        count = int(comp_box.sum())
        volume = count * voxel_ml
        if volume < c.min_component_ml:
            continue
        offset = np.array([s.start for s in box])
        idx = np.argwhere(comp_box) + offset
        p = prob[box][comp_box]
        p_f = float(p.max() if c.component_probability == "max" else p.mean())
        score = finding_score(p_f, volume, c.score_volume_scale_ml)
        centroid = aff[:3, :3] @ idx.mean(axis=0) + aff[:3, 3]
        new_label = len(findings) + 1
        labels[box][comp_box] = new_label
        findings.append(Finding(
            label=new_label, voxels=count, volume_ml=volume,
            centroid_ras_mm=tuple(float(v) for v in centroid),  # type: ignore[arg-type]
            max_diameter_mm=max_diameter_mm(idx, aff),
            signal=_signal(img, idx, normal, spacing, c), probability=float(p.max()),
            mean_probability=float(p.mean()), score=score, series=series))
    findings.sort(key=lambda f: (-f.score, -f.volume_ml))
    return SeriesAnalysis(series=series, findings=findings, labels=labels,
                          score=max((f.score for f in findings), default=0.0))


@dataclass
class StudyDecision:
    """What decide_study concluded (fields map 1:1 onto report.json)."""

    decision: Decision
    abnormality_score: float
    confidence: float | None
    reasons: list[str]
    findings: list[Finding] = field(default_factory=list)
    operating_point: dict[str, Any] | None = None


def _describe(f: Finding) -> str:
    x, y, z = f.centroid_ras_mm
    return (f"abnormal_signal: {f.signal} {f.volume_ml:.2f} ml, {f.max_diameter_mm:.0f} mm, "
            f"p={f.probability:.2f} at RAS ({x:.0f}, {y:.0f}, {z:.0f}) mm")


def decide_study(
    analyses: Sequence[SeriesAnalysis],
    study_reasons: Sequence[str],
    calibration: Calibration | None,
    resolution_limits: Mapping[str, Any] | None,
    max_listed: int = 3,
) -> StudyDecision:
    """The study's decision, score and calibrated confidence.

    Args:
        analyses: one SeriesAnalysis per used series (empty: nothing was assessed).
        study_reasons: qc.study_reasons() plus any brain/noise reasons the caller promoted
            to study level (e.g. for the primary series).
        calibration: the model's Calibration, or None when the weights ship none.
        resolution_limits: resolution.resolution_limits() of the primary series (or
            resolution.best_limits of several).
        max_listed: how many findings to name in ``reasons`` when flagged.
    """
    findings = sorted((f for a in analyses for f in a.findings),
                      key=lambda f: (-f.score, -f.volume_ml))
    score = float(min(max((a.score for a in analyses), default=0.0), 1.0))
    op = calibration.summary() if calibration is not None else None
    reasons = list(study_reasons)
    if not analyses:
        reasons.append("no_series_used: no series could be analysed")
    if calibration is None:
        reasons.append("no_calibration: the model ships no calibration.json; no operating point")
    if reasons:
        return StudyDecision(Decision.INDETERMINATE, score, None, reasons, findings, op)
    assert calibration is not None
    p_abnormal = calibration.probability(score)
    if calibration.is_flagged(score):
        reasons = [_describe(f) for f in findings[:max_listed]]
        if len(findings) > max_listed:
            reasons.append(f"abnormal_signal: {len(findings) - max_listed} more finding(s)")
        if not findings:
            reasons.append(f"abnormal_score: {score:.3f} >= threshold {calibration.threshold:.3f}")
        if not resolution_limits or resolution_limits.get("min_detectable_diameter_mm") is None:
            reasons.append("no_resolution_claim: "
                           + str((resolution_limits or {}).get("no_claim_reason") or "no limits"))
        return StudyDecision(Decision.FLAGGED, score, p_abnormal, reasons, findings, op)
    if not resolution_limits or resolution_limits.get("min_detectable_diameter_mm") is None:
        why = (resolution_limits or {}).get("no_claim_reason") or "no resolution limits given"
        return StudyDecision(Decision.INDETERMINATE, score, None,
                             [f"no_resolution_claim: {why}"], findings, op)
    return StudyDecision(Decision.NEGATIVE, score, 1.0 - p_abnormal, [], findings, op)
