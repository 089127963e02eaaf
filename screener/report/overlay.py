"""overlay.png: key axial slices with findings outlined and probabilities shown.

The volume is turned to the closest RAS+ orientation (nibabel, whole-voxel flips and axis
swaps only, no resampling) and shown in axial slices in the radiological convention: the
patient's right on the viewer's left (labelled R / L), anterior at the top. Slices go through
the centroids of the strongest findings; without findings, through 30 / 50 / 70 % of the brain's
superior-inferior extent. Pixel aspect follows the voxel size, so thick slices look thick.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from screener.atomic import write_bytes_atomic
from screener.report import ReportConfig, report_config


def to_ras(arrays: Sequence[npt.ArrayLike], affine: npt.ArrayLike
           ) -> tuple[list[np.ndarray], np.ndarray]:
    """Reorient arrays on one grid to the closest RAS+ axes; returns (arrays, new affine)."""
    import nibabel as nib

    aff = np.asarray(affine, dtype=np.float64)
    shape = np.asarray(arrays[0]).shape
    ornt = nib.orientations.io_orientation(aff)
    out = [nib.orientations.apply_orientation(np.asarray(a), ornt) for a in arrays]
    new_aff = aff @ nib.orientations.inv_ornt_aff(ornt, shape)
    return out, new_aff


def findings_from_labels(labels: np.ndarray, prob: np.ndarray, affine: np.ndarray
                         ) -> list[dict[str, Any]]:
    """Minimal finding dicts (centroid, volume, probability) from a label volume, largest first."""
    from scipy import ndimage

    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    out = []
    for lab, box in enumerate(ndimage.find_objects(labels.astype(np.int32, copy=False)), start=1):
        if box is None:
            continue
        inside = labels[box] == lab
        idx = np.argwhere(inside) + np.array([s.start for s in box])
        out.append({"centroid_ras_mm": list(affine[:3, :3] @ idx.mean(0) + affine[:3, 3]),
                    "volume_ml": len(idx) * voxel_ml, "max_diameter_mm": None,
                    "probability": float(prob[box][inside].max())})
    return sorted(out, key=lambda f: -f["volume_ml"])


def _caption(n: int, f: Mapping[str, Any]) -> str:
    size = f" {f['max_diameter_mm']:.0f} mm," if f.get("max_diameter_mm") is not None else ""
    return f"finding {n}: {f['volume_ml']:.2f} ml,{size} p={f['probability']:.2f}"


def _key_slices(findings: Sequence[Mapping[str, Any]], inv_aff: np.ndarray, brain: np.ndarray,
                n_slices: int, max_slices: int) -> list[tuple[int, str]]:
    chosen: list[tuple[int, str]] = []
    for n, f in enumerate(findings, start=1):
        ijk = inv_aff[:3, :3] @ np.asarray(f["centroid_ras_mm"], float) + inv_aff[:3, 3]
        z = int(np.clip(round(float(ijk[2])), 0, n_slices - 1))
        if all(z != c for c, _ in chosen):
            chosen.append((z, _caption(n, f)))
        if len(chosen) >= max_slices:
            return chosen
    if chosen:
        return chosen
    zs = np.nonzero(brain.any(axis=(0, 1)))[0]
    lo, hi = (int(zs.min()), int(zs.max())) if zs.size else (0, n_slices - 1)
    fractions = (0.3, 0.5, 0.7)[:max_slices]
    return [(int(round(lo + f * (hi - lo))), "no finding") for f in fractions]


def render_overlay(
    image: npt.ArrayLike,
    affine: npt.ArrayLike,
    lesion_prob: npt.ArrayLike | None = None,
    labels: npt.ArrayLike | None = None,
    cfg: ReportConfig | Mapping[str, Any] | None = None,
    *,
    findings: Sequence[Mapping[str, Any]] | None = None,
    brain_mask: npt.ArrayLike | None = None,
    title: str = "",
) -> bytes:
    """The overlay as PNG bytes.

    Args:
        image: (i, j, k) intensities of the analysed series.
        affine: 4x4 voxel -> RAS mm.
        lesion_prob: abnormality probabilities on the same grid (drawn where >= the
            configured minimum), or None.
        labels: finding label volume (nonzero voxels are outlined), or None.
        cfg: ReportConfig or a whole config mapping.
        findings: report.json findings (dicts with centroid_ras_mm, volume_ml, max_diameter_mm,
            probability), strongest first; None: derived from ``labels``, largest first.
        brain_mask: places slices and windows intensities when there is no finding
            (default: voxels above the median intensity).
        title: figure title (e.g. the decision).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    c = report_config(cfg)
    img = np.asarray(image, dtype=np.float32)
    prob = np.zeros_like(img) if lesion_prob is None else np.asarray(lesion_prob, np.float32)
    lab = np.zeros(img.shape, np.int32) if labels is None else np.asarray(labels)
    brain = (img > np.percentile(img, 50)) if brain_mask is None else np.asarray(brain_mask, bool)
    if findings is None:
        findings = findings_from_labels(lab, prob, np.asarray(affine, dtype=np.float64))
    (img, prob, lab, brain), aff = to_ras([img, prob, lab, brain], affine)
    spacing = np.linalg.norm(aff[:3, :3], axis=0)
    inv = np.linalg.inv(aff)
    slices = _key_slices(findings, inv, brain, img.shape[2], max(1, c.overlay_max_slices))
    # Window from a regular subsample (every 3rd voxel): percentiles of 10^7 voxels cost ~0.4 s.
    sub = (slice(None, None, 3),) * 3
    vals = img[sub][brain[sub]] if brain[sub].any() else img[sub].ravel()
    vmin, vmax = float(np.percentile(img[sub], 1)), float(np.percentile(vals, 99.5))
    if vmax <= vmin:
        vmax = vmin + 1.0

    fig = Figure(figsize=(3.4 * len(slices), 4.1), dpi=c.overlay_dpi, facecolor="black")
    FigureCanvasAgg(fig)
    for n, (z, caption) in enumerate(slices):
        ax = fig.add_subplot(1, len(slices), n + 1)
        ax.set_facecolor("black")
        # Radiological: flip x so the patient's right (high x) is on the viewer's left.
        def view(a: np.ndarray) -> np.ndarray:
            return a[::-1, :, z].T
        extent = (0, img.shape[0] * spacing[0], 0, img.shape[1] * spacing[1])
        ax.imshow(view(img), cmap="gray", vmin=vmin, vmax=vmax, origin="lower", extent=extent,
                  interpolation="nearest")
        shown = np.ma.masked_less(view(prob), c.overlay_prob_min)
        if shown.count():
            ax.imshow(shown, cmap="autumn", vmin=c.overlay_prob_min, vmax=1.0, alpha=0.45,
                      origin="lower", extent=extent, interpolation="nearest")
        outline = view(lab) > 0
        if outline.any():
            ax.contour(outline.astype(float), levels=[0.5], colors="cyan", linewidths=1.0,
                       origin="lower", extent=extent)
        ax.set_xticks([])
        ax.set_yticks([])
        z_mm = float((aff @ np.array([0, 0, z, 1.0]))[2])
        ax.set_title(f"{caption}\naxial z = {z_mm:.0f} mm", color="white", fontsize=8)
        for x, text in ((0.03, "R"), (0.93, "L")):
            ax.text(x, 0.5, text, transform=ax.transAxes, color="yellow", fontsize=10,
                    fontweight="bold", va="center")
        ax.text(0.5, 0.97, "A", transform=ax.transAxes, color="yellow", fontsize=9, ha="center", va="top")
    fig.suptitle(f"{title}\nAI-generated, not for diagnosis", color="white", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="black")
    return buf.getvalue()


def write_overlay(
    image: npt.ArrayLike,
    affine: npt.ArrayLike,
    lesion_prob: npt.ArrayLike | None,
    labels: npt.ArrayLike | None,
    path: str | Path,
    cfg: ReportConfig | Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Path:
    """render_overlay() written atomically to ``path`` (keywords as for render_overlay)."""
    return write_bytes_atomic(path, render_overlay(image, affine, lesion_prob, labels, cfg, **kwargs))
