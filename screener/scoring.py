"""Score one case's maps against an expert mask: resampling by world coordinates, voxel and
lesion-level results.

Expert masks may live on another voxel grid than the map (the MS masks of realdata-dev do):
they are brought onto the map's grid through both affines, nearest neighbour, never by
array shape. Multi-label masks (BraTS sub-regions 1-4) count any label > 0 as abnormal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from screener.metrics import dice, voxel_auprc


def resample_nearest(data: npt.NDArray[Any], affine: npt.NDArray[np.float64],
                     target_shape: tuple[int, ...], target_affine: npt.NDArray[np.float64],
                     fill: float = 0) -> npt.NDArray[Any]:
    """Values of `data` (grid `affine`) at the voxel centres of a target grid, nearest neighbour.

    Target voxels whose world position falls outside `data` get `fill`. Works slice by slice
    along the target's last axis to bound memory.

    Args:
        data: 3D source array.
        affine: source voxel -> world (4x4).
        target_shape: 3D shape of the target grid.
        target_affine: target voxel -> world (4x4).
        fill: value outside the source.

    Returns:
        Array of `target_shape` with data's dtype.
    """
    if data.ndim != 3 or len(target_shape) < 3:
        raise ValueError("resample_nearest works on 3D grids")
    shape = tuple(int(s) for s in target_shape[:3])
    src_from_tgt = np.linalg.inv(np.asarray(affine, float)) @ np.asarray(target_affine, float)
    out = np.full(shape, fill, dtype=data.dtype)
    ii, jj = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    ii, jj = ii.ravel().astype(float), jj.ravel().astype(float)
    for k in range(shape[2]):
        pts = src_from_tgt[:3, :3] @ np.stack([ii, jj, np.full_like(ii, k)]) + src_from_tgt[:3, 3:4]
        idx = np.rint(pts).astype(np.int64)
        ok = np.all((idx >= 0) & (idx < np.array(data.shape)[:, None]), axis=0)
        sl = np.full(ii.size, fill, dtype=data.dtype)
        sl[ok] = data[idx[0, ok], idx[1, ok], idx[2, ok]]
        out[:, :, k] = sl.reshape(shape[0], shape[1])
    return out


def voxel_volume_ml(affine: npt.NDArray[np.float64]) -> float:
    """Volume of one voxel in ml (= cm^3) from the affine's determinant."""
    return abs(float(np.linalg.det(np.asarray(affine, float)[:3, :3]))) / 1000.0


@dataclass
class Lesion:
    """A connected component of the expert mask, on the map grid."""

    volume_ml: float
    diameter_mm: float  # diameter of the sphere of equal volume
    detected: bool


def lesions(truth: npt.NDArray[np.bool_], pred: npt.NDArray[np.bool_] | None,
            affine: npt.NDArray[np.float64], study_flagged: bool) -> list[Lesion]:
    """Connected components (26-neighbourhood) of `truth`; detected = the study was flagged
    and a predicted voxel overlaps the component."""
    from scipy import ndimage

    labels, n = ndimage.label(truth, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return []
    vml = voxel_volume_ml(affine)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    hit = np.zeros(n + 1, bool)
    if pred is not None and study_flagged:
        hit[np.unique(labels[pred & truth])] = True
    out = []
    for lab in range(1, n + 1):
        vol = sizes[lab] * vml
        out.append(Lesion(volume_ml=float(vol),
                          diameter_mm=float((6 * vol * 1000 / np.pi) ** (1 / 3)),
                          detected=bool(hit[lab])))
    return out


def score_map(scores: npt.NDArray[np.floating[Any]], map_affine: npt.NDArray[np.float64],
              mask: npt.NDArray[Any], mask_affine: npt.NDArray[np.float64], threshold: float,
              study_flagged: bool) -> dict[str, Any]:
    """Voxel Dice / AUPRC and lesion detection of a voxel score map against an expert mask.

    Args:
        scores: voxel scores (probabilities, or z for the baseline) on the map grid.
        map_affine: the map's voxel -> world affine.
        mask: expert mask on its own grid (any label > 0 = abnormal).
        mask_affine: the mask's affine.
        threshold: score at or above which a voxel is called abnormal.
        study_flagged: whether the study-level decision was `flagged`.

    Returns:
        {"dice", "auprc", "truth_voxels", "pred_voxels", "lesions": [...]}.
    """
    s = np.asarray(scores)
    if s.ndim == 4:
        s = s[..., 0]
    m = np.asarray(mask)
    if m.ndim == 4:
        m = m[..., 0]
    truth = resample_nearest(m > 0, mask_affine, s.shape, map_affine, fill=False)
    pred = np.nan_to_num(s, nan=-np.inf) >= threshold
    les = lesions(truth, pred, map_affine, study_flagged)
    return {"dice": dice(pred, truth), "auprc": voxel_auprc(s, truth),
            "truth_voxels": int(truth.sum()), "pred_voxels": int(pred.sum()),
            "lesions": [vars(x) for x in les]}
