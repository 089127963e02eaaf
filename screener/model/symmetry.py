"""The head's mirror image about its own midsagittal plane: a second input channel.

A fluid-like cortical infarct is, voxel by voxel, the same as a widened sulcus, and a grey-matter
-like white-matter lesion the same as cortex: 0.6.0 missed such lesions with its lesion channel
below 0.05 and called them CSF or grey matter (docs/model-experiments.md). What tells them apart
for a reader is the other hemisphere. With `NetworkConfig.in_channels` 2 the network sees the
image and its reflection about the midsagittal plane, so a one-sided change reads as a
difference between the channels.

The plane is estimated from the image alone (the same code in training and at inference): the
normal starts at the grid's x (left-right) axis through the intensity centroid, then the two
tilts and the offset are fitted by gradient descent on the mean squared difference between the
image and its reflection, on a 2x coarser grid. Voxels whose reflection falls outside the grid
read 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Plane:
    """{p : normal . p = offset_mm}, p in mm from the grid's centre, axes of the grid."""

    normal: np.ndarray
    offset_mm: float

    def tilt_deg(self) -> float:
        return float(np.degrees(np.arccos(min(1.0, abs(self.normal[0])))))


def _centred_mm(shape: tuple[int, int, int], voxel_mm: float) -> torch.Tensor:
    axes = [(torch.arange(s, dtype=torch.float32) - (s - 1) / 2.0) * voxel_mm for s in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)  # (X, Y, Z, 3)


def _reflect_sample(vol: torch.Tensor, pts: torch.Tensor, normal: torch.Tensor, offset: torch.Tensor,
                    voxel_mm: float) -> torch.Tensor:
    """`vol` (X,Y,Z) read at the reflections of `pts` (X,Y,Z,3, mm from centre)."""
    shape = torch.tensor(vol.shape, dtype=torch.float32)
    d = (pts @ normal - offset)[..., None]
    refl = pts - 2.0 * d * normal
    half = (shape - 1) / 2.0 * voxel_mm
    norm = refl / half.clamp_min(1e-6)  # grid_sample's [-1, 1] per axis, align_corners=True
    grid = norm.flip(-1)[None]  # (1, D, H, W, 3) as (z, y, x)
    return F.grid_sample(vol[None, None], grid, mode="bilinear", padding_mode="zeros",
                         align_corners=True)[0, 0]


def _normal(t: torch.Tensor) -> torch.Tensor:
    n = torch.stack([torch.ones((), dtype=t.dtype), t[0], t[1]])
    return n / n.norm()


def estimate_plane(vol: torch.Tensor, voxel_mm: float, steps: int = 40, max_points: int = 12000,
                   seed: int = 0) -> Plane:
    """Midsagittal plane of a head volume (X,Y,Z), X the left-right axis."""
    odd = [s % 2 for s in vol.shape]
    if any(odd):  # pad to even sizes so the 2x coarser grid shares the grid's centre ...
        plane = estimate_plane(F.pad(vol, (0, odd[2], 0, odd[1], 0, odd[0])), voxel_mm, steps,
                               max_points, seed)
        shift = np.array(odd, dtype=np.float64) * voxel_mm / 2.0  # ... which moved by half a voxel
        return Plane(normal=plane.normal, offset_mm=plane.offset_mm + float(plane.normal @ shift))
    with torch.no_grad():
        small = F.avg_pool3d(vol[None, None].float(), 2)[0, 0]
        w = small.clamp_min(0)
        vx = 2.0 * voxel_mm
        pts = _centred_mm(tuple(small.shape), vx)
        total = float(w.sum())
        x0 = float((w * pts[..., 0]).sum()) / total if total > 0 else 0.0
        fg = w > 0.1 * float(w.max()) if total > 0 else torch.ones_like(w, dtype=torch.bool)
        p_fg, v_fg = pts[fg], small[fg]  # the fit looks at the head, not the air around it
        if len(v_fg) > max_points:
            pick = torch.randperm(len(v_fg), generator=torch.Generator().manual_seed(seed))[:max_points]
            p_fg, v_fg = p_fg[pick], v_fg[pick]
    tilt = torch.zeros(2, requires_grad=True)
    offset = torch.tensor(x0, requires_grad=True)
    opt = torch.optim.Adam([{"params": [tilt], "lr": 0.01}, {"params": [offset], "lr": 1.0}])
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            r = _reflect_sample(small, p_fg[:, None, None], _normal(tilt), offset, vx)[:, 0, 0]
            loss = ((v_fg - r) ** 2).mean()
            loss.backward()
            opt.step()
            with torch.no_grad():
                tilt.clamp_(-0.5, 0.5)  # at most ~27 degrees from the grid's x axis
    return Plane(normal=_normal(tilt.detach()).numpy().astype(np.float64),
                 offset_mm=float(offset.detach()))


def mirror(vol: torch.Tensor, voxel_mm: float, plane: Plane | None = None) -> torch.Tensor:
    """`vol` (X,Y,Z) reflected about its midsagittal plane, on the same grid."""
    plane = plane or estimate_plane(vol, voxel_mm)
    with torch.no_grad():
        pts = _centred_mm(tuple(vol.shape), voxel_mm)
        return _reflect_sample(vol.float(), pts, torch.from_numpy(plane.normal).float(),
                               torch.tensor(plane.offset_mm), voxel_mm)


def with_mirror(image: torch.Tensor, voxel_mm: float) -> torch.Tensor:
    """(1,X,Y,Z) image -> (2,X,Y,Z): the image and its midsagittal reflection."""
    return torch.cat([image, mirror(image[0], voxel_mm)[None]], 0)


def network_input(image: torch.Tensor, in_channels: int, voxel_mm: float) -> torch.Tensor:
    """The (1,X,Y,Z) image as a network with `in_channels` inputs takes it (training and
    `predict` alike): itself, or with its midsagittal reflection as a second channel. The
    reflection needs the whole head, so this comes before any cropping or tiling."""
    if in_channels == 1:
        return image
    if in_channels == 2:
        return with_mirror(image, voxel_mm)
    raise ValueError(f"no input defined for a network with {in_channels} input channels")


def tissue_asymmetry(image: torch.Tensor, probs: np.ndarray, voxel_mm: float, sigma_mm: float,
                     plane: Plane | None = None) -> np.ndarray:
    """How far each voxel's neighbourhood differs in tissue make-up from the mirrored one.

    The network's white-matter, grey-matter and fluid (ventricle + CSF) probabilities, each
    smoothed by a Gaussian of `sigma_mm`, are compared with their reflections about the
    midsagittal plane of `image` (X,Y,Z): half the summed absolute difference, in [0, 1]
    (0 = the same make-up, 1 = no tissue in common). A white-matter lesion the network calls
    grey matter leaves deep white matter on the other side; a normal head's cortex folds
    differently left and right, so the term is noisier near the surface.
    """
    from scipy import ndimage

    from screener.model.anatomy import Tissue

    plane = plane or estimate_plane(image, voxel_mm)
    parts = (probs[int(Tissue.WM)], probs[int(Tissue.GM)],
             probs[int(Tissue.VENTRICLE)] + probs[int(Tissue.CSF)])
    sigma = sigma_mm / voxel_mm
    d = np.zeros(probs.shape[1:], dtype=np.float32)
    for p in parts:
        s = ndimage.gaussian_filter(p.astype(np.float32), sigma)
        d += np.abs(s - mirror(torch.from_numpy(s), voxel_mm, plane).numpy())
    return d / 2.0


def misplaced_grey(image: torch.Tensor, probs: np.ndarray, voxel_mm: float, depth_mm: float = 3.0,
                   tolerance_mm: float = 6.0, plane: Plane | None = None) -> np.ndarray:
    """Thick grey matter with no thick grey matter near its mirror position (bool, X,Y,Z).

    Cortex is a ribbon a few mm thick; grey matter deeper than `depth_mm` from its own edge is
    either a deep nucleus or the cerebellar cortex, both found in the other hemisphere too, or
    something the network called grey matter that is not (a white-matter lesion on T1 has grey
    matter's signal). Kept: thick grey matter whose reflection about the midsagittal plane of
    `image` lies more than `tolerance_mm` from any thick grey matter.
    """
    from scipy import ndimage

    from screener.model.anatomy import Tissue

    plane = plane or estimate_plane(image, voxel_mm)
    grey = probs[int(Tissue.GM)] >= 0.5
    thick = ndimage.distance_transform_edt(grey) * voxel_mm > depth_mm
    near = ndimage.distance_transform_edt(~thick) * voxel_mm <= tolerance_mm
    mirrored = mirror(torch.from_numpy(near.astype(np.float32)), voxel_mm, plane).numpy() >= 0.5
    return thick & ~mirrored
