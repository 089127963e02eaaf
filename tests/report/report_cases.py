"""Helpers for report tests: small DICOM studies with a known lesion, written by the tests."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pydicom

from screener.calibrate import fit_calibration
from screener.decide import SeriesAnalysis, analyse_series, decide_study
from screener.io.dicom_writer import StudyIdentity, write_mr_series
from screener.report.json import build_report, series_entry
from screener.types import SeriesInfo, SequenceClass

LESION_RAS = np.array([24.0, -18.0, 20.0])


def rot(ax: float, ay: float, az: float) -> np.ndarray:
    a, b, c = (math.radians(v) for v in (ax, ay, az))
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


GEOMETRIES = {
    "axial": ((64, 76, 30), (3.0, 3.0, 5.0), np.eye(3)),
    "sagittal": ((76, 64, 48), (3.0, 3.0, 3.0),
                 np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])),
    "oblique": ((64, 64, 40), (3.0, 3.0, 4.0), rot(15, -20, 10)),
}


@dataclass
class Case:
    datasets: list
    image: np.ndarray
    affine: np.ndarray
    prob: np.ndarray
    brain: np.ndarray
    lesion: np.ndarray
    analysis: SeriesAnalysis
    info: SeriesInfo
    identity: StudyIdentity


def make_case(tmp_path, geometry: str = "oblique", lesion: bool = True) -> Case:
    shape, spacing, r = GEOMETRIES[geometry]
    aff = np.eye(4)
    aff[:3, :3] = r @ np.diag(spacing)
    aff[:3, 3] = np.array([0.0, 0.0, 10.0]) - aff[:3, :3] @ ((np.asarray(shape) - 1) / 2)
    ijk = np.indices(shape).reshape(3, -1).T.astype(float)
    xyz = (ijk @ aff[:3, :3].T + aff[:3, 3]).reshape(*shape, 3)
    brain = (((xyz - [0, 0, 10]) / [70, 85, 60]) ** 2).sum(-1) <= 1
    les = (np.linalg.norm(xyz - LESION_RAS, axis=-1) <= 8.0) if lesion else np.zeros(shape, bool)
    image = np.where(brain, 100.0, 4.0) + np.random.default_rng(1).normal(0, 3, shape)
    image[les] += 60
    ident = StudyIdentity()
    paths = write_mr_series(image, aff, tmp_path / "dicom", identity=ident, contrast="FLAIR",
                            slice_thickness_mm=spacing[2])
    datasets = [pydicom.dcmread(p) for p in paths]
    prob = np.where(les, 0.93, 0.01).astype(np.float32)
    analysis = analyse_series(prob, brain, image, aff, str(datasets[0].SeriesInstanceUID))
    info = SeriesInfo(study_instance_uid=ident.study_instance_uid,
                      series_instance_uid=str(datasets[0].SeriesInstanceUID),
                      series_description="T2 FLAIR AX", sequence=SequenceClass.FLAIR,
                      voxel_mm=spacing, slice_thickness_mm=spacing[2], slice_gap_mm=0.0,
                      shape=shape, accession_number=ident.accession_number)
    return Case(datasets, image, aff, prob, brain, les, analysis, info, ident)


def make_calibration():
    pos = np.linspace(0.35, 1.0, 120)
    neg = np.linspace(0.0, 0.4, 120)
    return fit_calibration(np.r_[pos, neg], np.r_[np.ones(120), np.zeros(120)], 0.98)


LIMITS = {"voxel_mm": [3.0, 3.0, 4.0], "slice_thickness_mm": 4.0, "slice_gap_mm": 0.0,
          "min_detectable_diameter_mm": 6.0, "sensitivity_at_min_diameter": 0.92,
          "benchmark_slice_thickness_mm": 5.0, "benchmark_n": 40, "no_claim_reason": None}


def make_report(case: Case, calibration, study_reasons=(), limits=None, outputs=None):
    from screener.resolution import statement

    lim = dict(limits or LIMITS)
    lim["statement"] = statement(lim)
    decision = decide_study([case.analysis], list(study_reasons), calibration, lim)
    return build_report(
        study={"study_instance_uid": case.info.study_instance_uid,
               "accession_number": case.info.accession_number, "source": "tests"},
        decision=decision, series=[series_entry(case.info, True)], resolution_limits=lim,
        model={"name": "test-model", "version": "0", "weights_sha256": None}, device="cpu",
        timing_s={"read": 0.1, "preprocess": 0.2, "infer": 0.3, "report": 0.1, "total": 0.7},
        outputs=outputs or {"anomaly_map": "anomaly_map.nii.gz", "sr": "sr.dcm", "seg": "seg.dcm",
                            "overlay": "overlay.png"})
