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


def _white_matter_phantom(lesion: bool) -> tuple[np.ndarray, np.ndarray]:
    """A 2 mm block the network calls white matter throughout, with a smooth bias field and
    noise; with `lesion`, a 60 mm sphere 50 % brighter (also called white matter, as the network
    calls large oedemas)."""
    from screener.model.anatomy import N_CLASSES, Tissue

    rng = np.random.default_rng(1)
    shape = (64, 64, 64)
    x = np.linspace(-1.0, 1.0, shape[0])[:, None, None]
    img = 0.4 * (1.0 + 0.1 * x) + rng.normal(0.0, 0.03, shape)
    if lesion:
        grid = np.indices(shape).astype(float)
        r = np.sqrt(((grid - 32.0) ** 2).sum(0)) * 2.0
        img = img + 0.2 * (r < 30.0)
    probs = np.zeros((N_CLASSES,) + shape, dtype=np.float32)
    probs[int(Tissue.WM)] = 1.0
    return img.astype(np.float32), probs


def test_robust_local_means_keep_a_large_lesion_from_being_its_own_reference():
    from screener.model.outlier import OutlierConfig, outlier_z

    img, probs = _white_matter_phantom(lesion=True)
    plain = outlier_z(img, probs, 2.0, OutlierConfig())
    robust = outlier_z(img, probs, 2.0, OutlierConfig(exclude_beyond_sd=3.0))
    centre = (slice(28, 36),) * 3
    assert np.median(plain[centre]) < 4.0  # the sphere's own voxels dominate its local mean
    assert np.median(robust[centre]) > 1.5 * np.median(plain[centre])
    assert np.median(robust[centre]) > 4.0  # the fusion's z0
    # seeded: the sphere's border stands out locally, so the sphere is still left out
    seeded = outlier_z(img, probs, 2.0, OutlierConfig(exclude_beyond_sd=3.0, exclude_seed_z=4.0))
    assert np.median(seeded[centre]) > 4.0


def test_robust_local_means_change_little_without_a_lesion():
    from screener.model.outlier import OutlierConfig, outlier_z

    img, probs = _white_matter_phantom(lesion=False)
    plain = outlier_z(img, probs, 2.0, OutlierConfig())
    robust = outlier_z(img, probs, 2.0, OutlierConfig(exclude_beyond_sd=3.0))
    assert np.abs(robust - plain).max() < 1.0
    assert (np.abs(robust) > 4.0).mean() <= (np.abs(plain) > 4.0).mean() + 1e-3
    # seeded: no plain outlier, so nothing is left out and the map is the plain one
    seeded = outlier_z(img, probs, 2.0, OutlierConfig(exclude_beyond_sd=3.0, exclude_seed_z=4.0))
    assert np.array_equal(seeded, plain)
