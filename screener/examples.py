"""Example and test studies from a real head: Colin27 (Debian's mricron-data, BSD-3-clause).

Colin27 is one subject's 1 mm full-head T1 (skull, scalp, orbits). This module resamples it,
by world coordinates, onto any acquisition grid (axial, sagittal, coronal, oblique; any voxel
size, slice thickness and gap), optionally paints a lesion at a known world position, and
writes the result as a DICOM MR series. The bundled example study and the screen tests are
made this way, so their truth (where the lesion is, how large) is known exactly.

    python -m screener.examples OUTDIR [--no-lesion] [--plane axial] [--thickness 3]
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COLIN27 = Path("/usr/share/mricron/templates/ch2.nii.gz")
COLIN27_BRAIN = Path("/usr/share/mricron/templates/ch2bet.nii.gz")
# Right frontal white matter of Colin27 (RAS mm): where the example lesion sits.
LESION_CENTRE_RAS = (24.0, 22.0, 24.0)
BUNDLED_STUDY_UID = "1.2.826.0.1.3680043.8.498.1000000000000000000000000000000001"


@dataclass(frozen=True)
class ExampleLesion:
    centre_ras: tuple[float, float, float] = LESION_CENTRE_RAS
    diameter_mm: float = 24.0
    core_factor: float = 0.55  # T1: hypointense core (relative to local intensity)
    rim_factor: float = 1.15  # slightly bright rim
    oedema_factor: float = 0.8  # hypointense surrounding oedema
    oedema_diameter_mm: float = 40.0


def plane_rotation(plane: str) -> np.ndarray:
    """Columns = RAS directions of the voxel axes i, j, k for a slice plane."""
    if plane == "axial":
        return np.array([[-1, 0, 0], [0, -1, 0], [0, 0, 1]], dtype=float).T
    if plane == "sagittal":
        return np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], dtype=float).T
    if plane == "coronal":
        return np.array([[-1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float).T
    if plane == "oblique":
        a, b = math.radians(20.0), math.radians(12.0)
        rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
        ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
        return rx @ ry @ plane_rotation("axial")
    raise ValueError(f"unknown plane {plane!r}")


def acquisition_grid(plane: str, inplane_mm: float, spacing_mm: float,
                     fov_mm: tuple[float, float, float] = (200.0, 230.0, 180.0),
                     centre_ras: tuple[float, float, float] = (0.0, -15.0, 10.0)
                     ) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Affine and shape of a grid covering the head (FOV along i, j and the slice axis k)."""
    rot = plane_rotation(plane)
    vox = np.array([inplane_mm, inplane_mm, spacing_mm])
    # FOV per voxel axis: pick the head extent along each axis' dominant RAS direction.
    extent = np.array([fov_mm[int(np.argmax(np.abs(rot[:, a])))] for a in range(3)])
    shape = tuple(int(round(e / v)) for e, v in zip(extent, vox))
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag(vox)
    aff[:3, 3] = np.array(centre_ras) - aff[:3, :3] @ ((np.array(shape) - 1) / 2.0)
    return aff, shape  # type: ignore[return-value]


def paint_lesion(image: np.ndarray, affine: np.ndarray, lesion: ExampleLesion) -> np.ndarray:
    """Lesion on any grid: soft hypointense oedema, bright rim, dark core (T1-like)."""
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in image.shape], indexing="ij"), -1)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    r = np.linalg.norm(world - np.array(lesion.centre_ras), axis=-1)
    rad = lesion.diameter_mm / 2.0
    out = image.astype(np.float32).copy()
    oed = 1.0 / (1.0 + np.exp(np.clip((r - lesion.oedema_diameter_mm / 2.0) / 2.0, -30, 30)))
    out *= 1.0 - (1.0 - lesion.oedema_factor) * oed
    rim = (r <= rad) & (r > rad - 2.5)
    out[rim] = image[rim] * lesion.rim_factor
    core = r <= rad - 2.5
    out[core] = image[core] * lesion.core_factor
    return out


def colin27_volume(affine: np.ndarray, shape: tuple[int, int, int], slice_thickness_mm: float,
                   ) -> np.ndarray:
    """Colin27 resampled onto the grid, with slice-profile blur for thick slices."""
    import nibabel as nib
    from scipy import ndimage

    img = nib.load(str(COLIN27))
    src = img.get_fdata(dtype=np.float32)
    if slice_thickness_mm > 1.5:  # thick slices: average across the slice profile
        return _profile_average(src, img.affine, affine, shape, slice_thickness_mm)
    ijk = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"), -1)
    vox = np.linalg.inv(img.affine) @ affine
    coords = ijk @ vox[:3, :3].T + vox[:3, 3]
    out = ndimage.map_coordinates(src, np.moveaxis(coords, -1, 0), order=1, cval=0.0)
    return out.astype(np.float32)


def _profile_average(src: np.ndarray, src_aff: np.ndarray, affine: np.ndarray,
                     shape: tuple[int, int, int], thickness: float) -> np.ndarray:
    """Mean of samples across the slice thickness (a box slice profile)."""
    from scipy import ndimage

    normal = affine[:3, 2] / np.linalg.norm(affine[:3, 2])
    offsets = np.linspace(-thickness / 2.0, thickness / 2.0, max(3, int(round(thickness)) + 1))
    ijk = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"), -1)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    inv = np.linalg.inv(src_aff)
    acc = np.zeros(shape, dtype=np.float64)
    for off in offsets:
        coords = (world + off * normal) @ inv[:3, :3].T + inv[:3, 3]
        acc += ndimage.map_coordinates(src, np.moveaxis(coords, -1, 0), order=1, cval=0.0)
    return (acc / len(offsets)).astype(np.float32)


def write_example_study(out_dir: str | Path, *, lesion: bool = True, plane: str = "axial",
                        inplane_mm: float = 1.0, slice_thickness_mm: float = 3.0,
                        slice_gap_mm: float = 0.0, identity=None, lesion_spec: ExampleLesion | None = None,
                        series_description: str | None = None,
                        fov_mm: tuple[float, float, float] = (200.0, 230.0, 180.0)) -> list[Path]:
    """Write a Colin27-based T1 DICOM series (with a lesion unless lesion=False).

    fov_mm: field of view along the R-L, A-P and S-I directions (each voxel axis takes the
    extent of its dominant direction).
    """
    from screener.io.dicom_writer import StudyIdentity, write_mr_series

    if not COLIN27.exists():
        raise FileNotFoundError(f"{COLIN27} missing: apt-get install mricron-data")
    aff, shape = acquisition_grid(plane, inplane_mm, slice_thickness_mm + slice_gap_mm, fov_mm)
    data = colin27_volume(aff, shape, slice_thickness_mm)
    if lesion:
        data = paint_lesion(data, aff, lesion_spec or ExampleLesion())
    extra = {"SeriesDescription": series_description or f"T1 {plane.upper()} example"}
    return write_mr_series(data, aff, out_dir, identity=identity or StudyIdentity(),
                           contrast="T1", slice_thickness_mm=slice_thickness_mm, extra=extra)


def write_bundled_example(out_dir: str | Path) -> list[Path]:
    """The study bundled in examples/colin27-t1-lesion (fictitious identifiers, fixed UID)."""
    from screener.io.dicom_writer import StudyIdentity

    ident = StudyIdentity(patient_name="Example^Colin27", patient_id="EXAMPLE-0001",
                          accession_number="EXAMPLE-ACC-1", patient_birth_date="19000101",
                          study_instance_uid=BUNDLED_STUDY_UID)
    return write_example_study(out_dir, lesion=True, plane="axial", inplane_mm=1.2,
                               slice_thickness_mm=4.0, identity=ident,
                               lesion_spec=ExampleLesion(diameter_mm=30.0),
                               series_description="T1 AX example (Colin27 + synthetic lesion)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Write a Colin27-based example DICOM study.")
    p.add_argument("out_dir")
    p.add_argument("--bundled", action="store_true",
                   help="write exactly the study bundled in examples/ (other options ignored)")
    p.add_argument("--no-lesion", action="store_true")
    p.add_argument("--plane", default="axial", choices=["axial", "sagittal", "coronal", "oblique"])
    p.add_argument("--inplane", type=float, default=1.0)
    p.add_argument("--thickness", type=float, default=3.0)
    p.add_argument("--gap", type=float, default=0.0)
    a = p.parse_args(argv)
    if a.bundled:
        paths = write_bundled_example(a.out_dir)
        print(f"wrote {len(paths)} files to {a.out_dir}")
        return 0
    paths = write_example_study(a.out_dir, lesion=not a.no_lesion, plane=a.plane,
                                inplane_mm=a.inplane, slice_thickness_mm=a.thickness,
                                slice_gap_mm=a.gap)
    print(f"wrote {len(paths)} files to {a.out_dir}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
