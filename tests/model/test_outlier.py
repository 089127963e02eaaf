"""The outlier map's wide smoothing: coarse Gaussian, then linear upsampling (outlier._smooth)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from screener.model.outlier import _smooth


def _reference(vol: np.ndarray, sigma_mm: float, voxel_mm: float, factor: int = 4) -> np.ndarray:
    """The same smoothing with SciPy's zoom for the upsampling (the implementation before torch)."""
    pad = [(0, (-s) % factor) for s in vol.shape]
    v = np.pad(vol, pad, mode="constant")
    coarse = v.reshape(v.shape[0] // factor, factor, v.shape[1] // factor, factor,
                       v.shape[2] // factor, factor).mean(axis=(1, 3, 5))
    coarse = ndimage.gaussian_filter(coarse, sigma_mm / (voxel_mm * factor), mode="constant")
    zoom = [f / c for f, c in zip(v.shape, coarse.shape)]
    fine = ndimage.zoom(coarse, zoom, order=1, mode="nearest", grid_mode=True)
    return fine[: vol.shape[0], : vol.shape[1], : vol.shape[2]]


def test_smooth_matches_scipy_zoom_upsampling():
    rng = np.random.default_rng(0)
    vol = rng.random((50, 61, 47)).astype(np.float32)  # not multiples of the factor
    vol[10:30, 20:40, 5:25] += 3.0
    got = _smooth(vol, 20.0, 2.0)
    assert got.shape == vol.shape
    assert np.abs(got - _reference(vol, 20.0, 2.0)).max() < 1e-5
    # and it does smooth: far less spread than the input
    assert got.std() < 0.5 * vol.std()
