"""FLAIR-threshold baseline (Meissen et al. 2021), run beside the model on the same studies.

Meissen et al. ("Challenging current semi-supervised anomaly segmentation methods for brain
MRI", 2021) showed that thresholding brain-masked, normalised FLAIR intensity rivals deep
anomaly detectors on hyperintense lesions. Here, fixed a priori (configs `evaluate.baseline`,
never tuned on the cases it is scored on):

1. brain mask: the model's brain mask when the screen wrote one (outputs.brain_mask), else
   `simple_brain_mask` (Otsu + 5 mm opening; padding-based on skull-stripped inputs);
2. normalise: robust z = (I - median) / (1.4826 * MAD) over brain voxels;
3. voxel abnormal: z > z_threshold inside the brain (z = 3 is the 99.87th percentile of the
   fitted normal-tissue distribution), components below min_component_ml dropped;
4. study score = abnormal volume (ml); flagged at >= flag_volume_ml, else negative.
Studies without a series of the configured contrasts are `indeterminate` for the baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from screener.metrics import mad_sd
from screener.scoring import resample_nearest, voxel_volume_ml

OUTSIDE_Z = -1000.0  # z written outside the brain (ranks below every brain voxel)


@dataclass(frozen=True)
class BaselineConfig:
    """The `evaluate.baseline` config section."""

    contrasts: list[str] = field(default_factory=lambda: ["FLAIR"])
    z_threshold: float = 3.0
    min_component_ml: float = 0.1
    flag_volume_ml: float = 1.0
    brain_mask: str = "auto"  # auto | simple


@dataclass
class BaselineResult:
    """The baseline's call on one study; maps are on the grid of the series it read."""

    decision: str
    score: float | None
    reasons: list[str]
    zmap: npt.NDArray[np.float32] | None = None
    affine: npt.NDArray[np.float64] | None = None
    brain_mask_source: str = ""


def simple_brain_mask(data: npt.NDArray[np.floating[Any]],
                      spacing_mm: Sequence[float] = (1.0, 1.0, 1.0),
                      opening_mm: float = 5.0) -> npt.NDArray[np.bool_]:
    """A plain brain mask for when the model's brain mask is not available.

    Skull-stripped inputs (>= 20 % of voxels share one padding value): every voxel that
    differs from the padding. Otherwise: Otsu threshold of the lightly smoothed image, then a
    morphological opening of radius `opening_mm` (distance transforms in mm, so anisotropic
    voxels are handled) keeping the largest core, which cuts thin bridges between scalp and
    brain; holes are filled. Fixed a priori, not fitted to any evaluation set. It still keeps
    some scalp, orbit and skull-base tissue on images with skull, where bright fat then counts
    against the baseline: a known weakness of a threshold without skull stripping.
    """
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    d = np.nan_to_num(np.asarray(data, dtype=np.float32))
    values, counts = np.unique(d, return_counts=True)
    if counts.max() >= 0.2 * d.size:
        fg = d != values[np.argmax(counts)]
        return _largest(fg) if fg.any() else fg
    smooth = ndimage.gaussian_filter(d, 1.0)
    fg = smooth > threshold_otsu(smooth)
    sp = tuple(float(s) for s in spacing_mm)
    core = _largest(ndimage.distance_transform_edt(fg, sampling=sp) > opening_mm)
    if not core.any():
        return _largest(fg)
    back = (ndimage.distance_transform_edt(~core, sampling=sp) <= opening_mm) & fg
    return ndimage.binary_fill_holes(back)


def _largest(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Largest 26-connected component, holes filled."""
    from scipy import ndimage

    from screener.infer import largest_label

    return ndimage.binary_fill_holes(largest_label(mask))


def robust_z(data: npt.NDArray[np.floating[Any]], brain: npt.NDArray[np.bool_]
             ) -> npt.NDArray[np.float32] | None:
    """Robust z of every brain voxel; OUTSIDE_Z elsewhere; None if the brain has no spread."""
    vals = data[brain]
    if vals.size < 100:
        return None
    med = float(np.median(vals))
    mad = mad_sd(vals)
    if not np.isfinite(mad) or mad <= 0:
        return None
    z = np.full(data.shape, OUTSIDE_Z, dtype=np.float32)
    z[brain] = (vals - med) / mad
    return z


def threshold_map(data: npt.NDArray[np.floating[Any]], affine: npt.NDArray[np.float64],
                  brain: npt.NDArray[np.bool_], cfg: BaselineConfig,
                  mask_source: str = "simple") -> BaselineResult:
    """Steps 2-4 of the baseline on one volume with its brain mask."""
    from scipy import ndimage

    z = robust_z(np.asarray(data, dtype=np.float32), brain)
    if z is None:
        return BaselineResult("indeterminate", None, ["baseline: brain mask empty or flat"])
    hot = z > cfg.z_threshold
    labels, n = ndimage.label(hot, structure=np.ones((3, 3, 3), bool))
    vml = voxel_volume_ml(affine)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:] * vml
    keep = np.flatnonzero(sizes >= cfg.min_component_ml) + 1
    volume = float(sizes[keep - 1].sum()) if keep.size else 0.0
    z[(labels > 0) & ~np.isin(labels, keep)] = np.minimum(
        z[(labels > 0) & ~np.isin(labels, keep)], cfg.z_threshold)  # dropped: not abnormal
    decision = "flagged" if volume >= cfg.flag_volume_ml else "negative"
    return BaselineResult(decision, volume,
                          [f"baseline: {volume:.2f} ml above robust z {cfg.z_threshold:g}"],
                          zmap=z, affine=np.asarray(affine, float), brain_mask_source=mask_source)


def pick_series(study: Any, contrasts: list[str]) -> Any | None:
    """The first series of the study whose sequence class is one of `contrasts`."""
    wanted = {c.upper() for c in contrasts}
    for info in getattr(study, "series", []) or []:
        seq = getattr(info.sequence, "value", info.sequence)
        if str(seq).upper() in wanted:
            return info
    return None


def run_baseline(study: Any, config: dict[str, Any], cfg: BaselineConfig,
                 model_brain: tuple[npt.NDArray[Any], npt.NDArray[np.float64]] | None = None
                 ) -> BaselineResult:
    """The baseline on one study; never raises for bad input (returns indeterminate).

    Args:
        study: a `Study` from discovery.
        config: full config (io section for loading).
        cfg: baseline settings.
        model_brain: (brain mask, affine) written by the screen, when available.
    """
    from screener.errors import InputError
    from screener.io import load_series

    info = pick_series(study, cfg.contrasts) if study is not None else None
    if info is None:
        return BaselineResult("indeterminate", None,
                              [f"baseline: no {'/'.join(cfg.contrasts)} series"])
    try:
        vol = load_series(info, config)
    except (InputError, OSError, ValueError) as exc:
        return BaselineResult("indeterminate", None, [f"baseline: cannot read series ({exc})"])
    data = vol.data[..., 0] if vol.data.ndim == 4 else vol.data
    if model_brain is not None and cfg.brain_mask == "auto":
        brain = resample_nearest(np.asarray(model_brain[0]) > 0, model_brain[1], data.shape,
                                 vol.affine, fill=False)
        source = "model"
    else:
        spacing = np.linalg.norm(np.asarray(vol.affine, float)[:3, :3], axis=0)
        brain, source = simple_brain_mask(data, spacing), "simple"
    return threshold_map(data, vol.affine, brain, cfg, source)
