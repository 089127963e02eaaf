"""Findings in world space on axial, sagittal and oblique grids; score; study decision."""

from __future__ import annotations

import math

import numpy as np
import pytest

from screener.calibrate import fit_calibration
from screener.decide import (SeriesAnalysis, analyse_series, decide_config, decide_study,
                             max_diameter_mm)
from screener.types import Decision


def rotation(ax_deg: float, ay_deg: float, az_deg: float) -> np.ndarray:
    a, b, c = (math.radians(v) for v in (ax_deg, ay_deg, az_deg))
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def grid(shape, spacing, rot, centre=(0.0, 0.0, 10.0)) -> np.ndarray:
    """Affine whose volume centre lands on world `centre`."""
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag(spacing)
    aff[:3, 3] = np.asarray(centre) - aff[:3, :3] @ ((np.asarray(shape) - 1) / 2)
    return aff


AXIAL = ((96, 112, 40), (2.0, 2.0, 4.0), np.eye(3))
# Sagittal: i -> posterior-anterior (A), j -> inferior-superior (S), k (slices) -> left-right.
SAGITTAL = ((112, 96, 60), (2.0, 2.0, 2.5),
            np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
OBLIQUE = ((100, 100, 50), (1.8, 1.8, 3.0), rotation(18, -25, 12))


def world(shape, aff):
    ijk = np.indices(shape).reshape(3, -1).T.astype(float)
    return (ijk @ aff[:3, :3].T + aff[:3, 3]).reshape(*shape, 3)


def scene(shape, spacing, rot, lesion_at=(22.0, -31.0, 17.0), radius=6.0, contrast=60.0,
          p=0.92, seed=0):
    aff = grid(shape, spacing, rot)
    xyz = world(shape, aff)
    q = (((xyz - np.array([0.0, 0.0, 10.0])) / np.array([70.0, 85.0, 60.0])) ** 2).sum(-1)
    brain = q <= 1
    d = np.linalg.norm(xyz - np.asarray(lesion_at), axis=-1)
    lesion = d <= radius
    rng = np.random.default_rng(seed)
    image = np.where(brain, 100.0, 5.0) + rng.normal(0, 4, shape)
    image[lesion] += contrast
    prob = np.where(lesion, p, 0.02).astype(np.float32)
    return prob, brain, image, aff, lesion


@pytest.mark.parametrize("geom", [AXIAL, SAGITTAL, OBLIQUE], ids=["axial", "sagittal", "oblique"])
def test_blob_centroid_volume_diameter_in_world_space(geom):
    shape, spacing, rot = geom
    true = np.array([22.0, -31.0, 17.0])
    prob, brain, image, aff, lesion = scene(shape, spacing, rot, lesion_at=true, radius=6.0)
    a = analyse_series(prob, brain, image, aff, series="1.2.3")
    assert len(a.findings) == 1
    f = a.findings[0]
    assert np.linalg.norm(np.array(f.centroid_ras_mm) - true) < 1.5, f.centroid_ras_mm
    analytic_ml = 4 / 3 * math.pi * 6.0 ** 3 / 1000  # 0.905 ml
    assert f.volume_ml == pytest.approx(analytic_ml, rel=0.25)
    assert f.volume_ml == pytest.approx(lesion.sum() * np.prod(spacing) / 1000, rel=1e-6)
    assert abs(f.max_diameter_mm - 12.0) <= 1.0, f.max_diameter_mm
    assert f.signal == "hyperintense" and f.probability == pytest.approx(0.92)
    assert f.series == "1.2.3"
    assert a.labels.dtype == np.int32 and set(np.unique(a.labels)) == {0, 1}
    assert (a.labels == 1).sum() == f.voxels
    assert 0 < a.score <= 1


def test_elongated_blob_diameter_along_slice_axis():
    # A 30 mm long rod along the 4 mm slice axis of an axial grid: anisotropy handled.
    shape, spacing, rot = AXIAL
    aff = grid(shape, spacing, rot)
    xyz = world(shape, aff)
    rod = (np.hypot(xyz[..., 0], xyz[..., 1]) <= 3.0) & (np.abs(xyz[..., 2] - 10.0) <= 15.0)
    idx = np.argwhere(rod)
    # Centres of a 30 mm rod sampled every 4 mm span 28 mm: within one slice spacing.
    assert abs(max_diameter_mm(idx, aff) - math.hypot(30.0, 6.0)) <= 4.0
    # One 2 x 2 x 4 mm voxel: its equivalent-sphere diameter.
    assert max_diameter_mm(np.array([[5, 5, 5]]), aff) == pytest.approx((6 * 16 / math.pi) ** (1 / 3))


def test_signal_hypo_and_mixed():
    shape, spacing, rot = OBLIQUE
    prob, brain, image, aff, lesion = scene(shape, spacing, rot, contrast=-60.0)
    assert analyse_series(prob, brain, image, aff, "s").findings[0].signal == "hypointense"
    prob, brain, image, aff, lesion = scene(shape, spacing, rot, contrast=0.0)
    xyz = world(shape, aff)
    image[lesion & (xyz[..., 0] > 22.0)] += 60
    image[lesion & (xyz[..., 0] <= 22.0)] -= 60
    assert analyse_series(prob, brain, image, aff, "s").findings[0].signal == "mixed"


def test_outside_brain_and_small_components_are_ignored():
    shape, spacing, rot = AXIAL
    prob, brain, image, aff, _ = scene(shape, spacing, rot)
    prob[2:6, 2:6, 2:6] = 0.99  # corner of the volume, outside the brain ellipsoid
    assert not brain[2:6, 2:6, 2:6].any()
    c = decide_config()
    tiny = np.argwhere(brain & (prob < 0.5))[5000]
    prob[tuple(tiny)] = 0.99  # one 16 mm3 voxel < min_component_ml
    assert 16 / 1000 < c.min_component_ml
    a = analyse_series(prob, brain, image, aff, "s")
    assert len(a.findings) == 1


def test_score_grows_with_size_and_probability():
    shape, spacing, rot = AXIAL
    scores = {}
    for r, p in [(3.0, 0.9), (6.0, 0.9), (6.0, 0.6), (10.0, 0.9)]:
        prob, brain, image, aff, _ = scene(shape, spacing, rot, radius=r, p=p)
        scores[(r, p)] = analyse_series(prob, brain, image, aff, "s").score
    assert scores[(3.0, 0.9)] < scores[(6.0, 0.9)] < scores[(10.0, 0.9)] <= 0.9
    assert scores[(6.0, 0.6)] < scores[(6.0, 0.9)]
    empty = analyse_series(np.zeros(shape, np.float32), brain, image, aff, "s")
    assert empty.score == 0.0 and empty.findings == []
    # Documented formula, recomputed from the finding's own numbers.
    f = analyse_series(*scene(shape, spacing, rot)[:4], "s").findings[0]
    scale = decide_config().score_volume_scale_ml
    assert f.score == pytest.approx(f.probability * (1 - math.exp(-f.volume_ml / scale)))


def test_shapes_must_match_and_probabilities_be_finite():
    with pytest.raises(ValueError):
        analyse_series(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), np.zeros((4, 4, 4)), np.eye(4), "s")
    bad = np.zeros((4, 4, 4), np.float32)
    bad[1, 1, 1] = np.nan
    with pytest.raises(ValueError):
        analyse_series(bad, np.ones((4, 4, 4)), np.zeros((4, 4, 4)), np.eye(4), "s")


@pytest.fixture
def calibration():
    rng = np.random.default_rng(3)
    pos = np.clip(rng.normal(0.8, 0.12, 300), 0, 1)
    neg = np.clip(rng.normal(0.15, 0.1, 300), 0, 1)
    return fit_calibration(np.r_[pos, neg], np.r_[np.ones(300), np.zeros(300)], 0.98)


LIMITS = {"min_detectable_diameter_mm": 5.0, "no_claim_reason": None}
NO_CLAIM = {"min_detectable_diameter_mm": None, "no_claim_reason": "slice thickness 9 mm is beyond"}


def test_decide_flagged_negative_and_confidence(calibration):
    shape, spacing, rot = AXIAL
    a = analyse_series(*scene(shape, spacing, rot, radius=8.0)[:4], "s")
    d = decide_study([a], [], calibration, LIMITS)
    assert d.decision is Decision.FLAGGED and a.score >= calibration.threshold
    assert d.confidence == pytest.approx(calibration.probability(a.score))
    assert d.reasons[0].startswith("abnormal_signal: hyperintense")
    assert d.operating_point["fnr_upper_bound"] == calibration.fnr_upper_bound
    clean = SeriesAnalysis("s", [], np.zeros(shape, np.int32), 0.0)
    n = decide_study([clean], [], calibration, LIMITS)
    assert n.decision is Decision.NEGATIVE and n.reasons == []
    assert n.confidence == pytest.approx(1 - calibration.probability(0.0)) and n.confidence > 0.9


def test_decide_fails_closed(calibration):
    shape = AXIAL[0]
    clean = SeriesAnalysis("s", [], np.zeros(shape, np.int32), 0.0)
    cases = [
        ([clean], ["brain_volume_implausible: 300 ml"], calibration, LIMITS, "brain_volume_implausible"),
        ([], [], calibration, LIMITS, "no_series_used"),
        ([clean], [], None, LIMITS, "no_calibration"),
        ([clean], [], calibration, NO_CLAIM, "no_resolution_claim"),
        ([clean], [], calibration, None, "no_resolution_claim"),
    ]
    for analyses, reasons, cal, limits, code in cases:
        d = decide_study(analyses, reasons, cal, limits)
        assert d.decision is Decision.INDETERMINATE and d.confidence is None, code
        assert any(r.startswith(code) for r in d.reasons), d.reasons


def test_flag_survives_missing_resolution_claim(calibration):
    shape, spacing, rot = AXIAL
    a = analyse_series(*scene(shape, spacing, rot, radius=8.0)[:4], "s")
    d = decide_study([a], [], calibration, NO_CLAIM)
    assert d.decision is Decision.FLAGGED
    assert any(r.startswith("no_resolution_claim") for r in d.reasons)
    # ...but a study-level QC reason still makes it indeterminate, findings kept.
    q = decide_study([a], ["brain_cut_off: 40 cm2"], calibration, LIMITS)
    assert q.decision is Decision.INDETERMINATE and len(q.findings) == 1
