"""Series written by the tests themselves (axial, sagittal, coronal, oblique, with a slice gap)
must read back with the exact geometry they were written with, and match dcm2niix run here."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from io_world import resample_to_ref, world_error_mm
from screener.io import find_studies, load_series, write_nifti
from screener.io.dicom_writer import StudyIdentity, write_mr_series


def _rot(ax: str, deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    i, j = {"x": (1, 2), "y": (0, 2), "z": (0, 1)}[ax]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _affine(directions: np.ndarray, spacing: tuple[float, float, float],
            origin: tuple[float, float, float]) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = directions @ np.diag(spacing)
    a[:3, 3] = origin
    return a


# Voxel axes -> RAS directions (columns), for the planes a scanner writes.
PLANES = {
    "axial": (np.array([[-1, 0, 0], [0, -1, 0], [0, 0, 1]], float), (0.9, 0.9, 3.0)),
    "sagittal": (np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float).T @ np.eye(3), (1.0, 1.0, 4.0)),
    "coronal": (np.array([[-1, 0, 0], [0, 0, 1], [0, -1, 0]], float).T, (0.8, 0.8, 2.5)),
    "oblique": (_rot("x", 18.0) @ _rot("z", -11.0) @ np.diag([-1.0, -1.0, 1.0]), (0.7, 0.75, 1.5)),
}


def _phantom(shape: tuple[int, int, int]) -> np.ndarray:
    """Distinct values along every axis, so a flip or permutation cannot go unnoticed."""
    i, j, k = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    return 100 + 7 * i + 3 * j * j / shape[1] + 50 * k + 20 * np.sin(i * j / 17.0)


@pytest.fixture(params=sorted(PLANES))
def written(request, tmp_path):
    directions, spacing = PLANES[request.param]
    shape = (40, 34, 12)
    aff = _affine(directions, spacing, (12.5, -30.25, 41.0))
    data = _phantom(shape)
    thickness = spacing[2] * 0.8  # a gap of 20 % of the spacing
    folder = tmp_path / "dicom"
    write_mr_series(data, aff, folder, identity=StudyIdentity(), contrast="T2",
                    slice_thickness_mm=thickness)
    return request.param, data, aff, thickness, folder


def test_geometry_and_values_as_written(written, tmp_path):
    plane, data, aff, thickness, folder = written
    found = find_studies([folder])
    assert not found.errors and found.skipped == 0
    (series,) = found.studies[0].series
    assert series.warnings == []
    assert series.slice_thickness_mm == pytest.approx(thickness, abs=1e-4)
    spacing = float(np.linalg.norm(aff[:3, 2]))
    assert series.slice_gap_mm == pytest.approx(spacing - thickness, abs=1e-3)
    assert series.voxel_mm == pytest.approx(tuple(np.linalg.norm(aff[:3, :3], axis=0)), abs=1e-4)
    vol = load_series(series)
    assert world_error_mm(vol.affine, aff, data.shape) < 1e-3
    got = resample_to_ref(vol.data, vol.affine, aff, data.shape)
    slope = (data.max() - data.min()) / 32000
    assert np.max(np.abs(got - data)) <= slope  # int16 storage with RescaleSlope
    # slice order: source files and SOP UIDs follow the volume's slice axis
    assert [int(p.stem[2:]) for p in series.source_files] == list(range(1, data.shape[2] + 1)) \
        or [int(p.stem[2:]) for p in series.source_files] == list(range(data.shape[2], 0, -1))


@pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="dcm2niix not installed")
def test_matches_dcm2niix(written, tmp_path):
    import nibabel as nib

    plane, data, aff, thickness, folder = written
    out = tmp_path / "dcm2niix"
    out.mkdir()
    subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-f", "ref", "-o", str(out), str(folder)],
                   check=True, capture_output=True, timeout=60)
    (ref_path,) = sorted(out.glob("*.nii"))
    ref = nib.load(str(ref_path))
    (series,) = find_studies([folder]).studies[0].series
    ours_path = write_nifti(load_series(series), tmp_path / "ours.nii.gz")
    ours = nib.load(str(ours_path))
    assert world_error_mm(ours.affine, ref.affine, ref.shape) <= 0.01
    ref_data = ref.get_fdata()
    got = resample_to_ref(np.asarray(ours.dataobj), ours.affine, ref.affine, ref.shape)
    assert np.max(np.abs(got - ref_data)) <= 1e-5 * np.max(np.abs(ref_data))
