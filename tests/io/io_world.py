"""World-space comparison of two NIfTI images (readers may permute or flip voxel axes)."""

from __future__ import annotations

import itertools

import numpy as np


def index_map(ours: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer matrix and offset taking a reference voxel index to our voxel index."""
    m = np.linalg.inv(ours) @ ref
    return np.round(m[:3, :3]), np.round(m[:3, 3])


def world_error_mm(ours_aff: np.ndarray, ref_aff: np.ndarray, ref_shape: tuple[int, ...]) -> float:
    """Max distance (mm) between the world positions of the reference grid's corner voxels
    and the positions our affine gives the voxels they map to."""
    rot, off = index_map(ours_aff, ref_aff)
    worst = 0.0
    for corner in itertools.product(*[(0, n - 1) for n in ref_shape[:3]]):
        c = np.array(corner, dtype=float)
        ours_idx = rot @ c + off
        p_ref = ref_aff[:3, :3] @ c + ref_aff[:3, 3]
        p_ours = ours_aff[:3, :3] @ ours_idx + ours_aff[:3, 3]
        worst = max(worst, float(np.linalg.norm(p_ref - p_ours)))
    return worst


def resample_to_ref(ours: np.ndarray, ours_aff: np.ndarray, ref_aff: np.ndarray,
                    ref_shape: tuple[int, ...]) -> np.ndarray:
    """Our data on the reference voxel grid by pure index permutation/flip (no interpolation).
    Raises AssertionError when the grids do not coincide voxel for voxel."""
    rot, off = index_map(ours_aff, ref_aff)
    assert np.all(np.abs(rot).sum(axis=0) == 1) and np.all(np.abs(rot).sum(axis=1) == 1), \
        f"voxel axes are not a permutation/flip: {rot}"
    grids = np.meshgrid(*[np.arange(n) for n in ref_shape[:3]], indexing="ij")
    ref_idx = np.stack([g.ravel() for g in grids])
    ours_idx = (rot @ ref_idx + off[:, None]).astype(int)
    for ax in range(3):
        assert ours_idx[ax].min() >= 0 and ours_idx[ax].max() < ours.shape[ax], "grids do not overlap"
    picked = ours[ours_idx[0], ours_idx[1], ours_idx[2]]
    return picked.reshape(tuple(ref_shape[:3]) + ours.shape[3:])
