"""Synthetic lesions: where they go, what shape and signal they have, and the mass effect.

Kinds (what the screener claims to detect):
- oedema: soft-bordered hyperintensity (on fluid-sensitive contrast) confined to white matter;
- mass: solid or rim-enhancing lesion with necrotic core, surrounding oedema, mass effect;
- haemorrhage: compact lesion; on SWI/T2*-like contrast dark with susceptibility blooming;
- demyelination: small ovoid periventricular lesions, 3-15 mm, often several;
- infarct: wedge from the cortex inward, sharp border, cortical + subcortical.
Signal direction follows water content ("fluid-ward": towards CSF intensity), except on
FLAIR-like contrast where lesions are bright and CSF is dark; a share is drawn the other way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from screener.model.anatomy import Tissue

KINDS = ("oedema", "mass", "haemorrhage", "demyelination", "infarct")
KIND_P = (0.2, 0.2, 0.15, 0.25, 0.2)
DIAMETER_MM = {  # (low, high), drawn log-uniform
    "oedema": (8.0, 50.0), "mass": (8.0, 50.0), "haemorrhage": (4.0, 35.0),
    "demyelination": (3.0, 15.0), "infarct": (8.0, 50.0),
}


@dataclass
class LesionSpec:
    kind: str
    centre_vox: np.ndarray  # output grid voxel coordinates
    diameter_mm: float
    radii_scale: np.ndarray  # per-axis aspect (<= 1)
    rotation: np.ndarray  # 3x3
    direction: np.ndarray | None = None  # infarct: unit vector from cortex inward


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _pick(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray | None:
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return None
    return np.array(np.unravel_index(int(idx[rng.integers(idx.size)]), mask.shape), dtype=np.float64)


# Kinds that may be drawn large (SynthConfig.p_large_lesion): real gliomas with their oedema
# span 80-220 ml (realdata-dev), more than a 50 mm draw.
LARGE_KINDS = ("mass", "oedema")


def plan_lesions(rng: np.random.Generator, tissue: torch.Tensor, voxel_mm: float,
                 spec: object | None = None, p_large: float = 0.0,
                 large_mm: tuple[float, float] = (50.0, 90.0),
                 extra: tuple[int, int] = (0, 0)) -> list[LesionSpec]:
    """Choose kinds, sizes and places of the lesions of one sample. With `p_large` > 0 a mass
    or oedema whose size is not fixed by `spec` is drawn log-uniform from `large_mm` instead,
    with that probability (no random number is drawn when it is 0, so earlier draws repeat).
    With `extra` = (a, b), b > 0 and no `spec`, a + U{0..b-a} more lesions join the plan (kinds
    as for a second lesion: random, or demyelination again; no random number is drawn when b is
    0)."""
    from scipy import ndimage

    t = tissue.numpy()
    wm, gm, vent = t == Tissue.WM, t == Tissue.GM, t == Tissue.VENTRICLE
    parenchyma = wm | gm
    if parenchyma.sum() < 1000:
        return []
    kind = getattr(spec, "kind", None) or KINDS[int(rng.choice(len(KINDS), p=KIND_P))]
    n = getattr(spec, "n_lesions", None)
    if n is None:
        n = int(rng.integers(1, 9)) if kind == "demyelination" and getattr(spec, "kind", None) is None \
            else (1 if rng.random() < 0.8 or spec is not None else 2)
        if spec is None and extra[1] > 0:
            n += int(rng.integers(extra[0], extra[1] + 1))
    fixed_d = getattr(spec, "diameter_mm", None)
    inner = ndimage.binary_erosion(parenchyma, iterations=2)
    near_vent = None  # distance to the ventricles (mm): computed once, for demyelination only
    plans = []
    for i in range(n):
        k = kind if i == 0 or kind == "demyelination" else KINDS[int(rng.choice(len(KINDS), p=KIND_P))]
        lo, hi = DIAMETER_MM[k]
        d = float(fixed_d) if fixed_d is not None else float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        if fixed_d is None and p_large > 0 and k in LARGE_KINDS and rng.random() < p_large:
            d = float(math.exp(rng.uniform(math.log(large_mm[0]), math.log(large_mm[1]))))
        if k == "demyelination":
            if near_vent is None:
                near_vent = ndimage.distance_transform_edt(~vent) * voxel_mm
            where = wm & (near_vent > 1.0) & (near_vent < 10.0)
        elif k == "oedema":
            where = wm & inner
        elif k == "infarct":
            where = gm & ~ndimage.binary_erosion(parenchyma | vent, iterations=1)
        else:
            where = inner
        if not where.any():
            where = parenchyma
        centre = _pick(rng, where)
        if centre is None:
            continue
        direction = None
        if k == "infarct":  # inward = towards the centre of mass of the brain
            com = np.array(ndimage.center_of_mass(parenchyma))
            v = com - centre
            direction = v / max(np.linalg.norm(v), 1e-6)
        aspect = np.ones(3) if k == "infarct" else np.concatenate([[1.0], rng.uniform(0.55, 1.0, 2)])
        plans.append(LesionSpec(kind=k, centre_vox=centre, diameter_mm=d, radii_scale=aspect,
                                rotation=_random_rotation(rng), direction=direction))
    return plans


def apply_mass_effect(pts: np.ndarray, masses: list[LesionSpec], out_aff: np.ndarray,
                      rng: np.random.Generator) -> np.ndarray:
    """Pull sampling points towards each mass centre so anatomy appears pushed outwards."""
    shape = pts.shape[:3]
    vox = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"), -1)
    out = pts.copy()
    for m in masses:
        c = np.clip(np.round(m.centre_vox).astype(int), 0, np.array(shape) - 1)
        d_mm = np.linalg.norm((vox - m.centre_vox) * out_aff[0, 0], axis=-1)
        reach = max(m.diameter_mm, 8.0)
        w = np.exp(-np.minimum((d_mm / reach) ** 2, 50.0)) * rng.uniform(0.25, 0.5)
        out = out - (out - pts[c[0], c[1], c[2]]) * w[..., None]
    return out


def _fluid_sign(rng: np.random.Generator, host: float, csf: float, contrast: str) -> float:
    if contrast == "FLAIR":
        return 1.0 if rng.random() < 0.85 else -1.0
    fluid = 1.0 if csf >= host else -1.0
    u = rng.random()
    return fluid if u < 0.7 else (1.0 if u < 0.9 else -1.0)


def _shape_rho(spec: LesionSpec, shape: tuple[int, ...], voxel_mm: float, gen: torch.Generator,
               reach: float) -> tuple[tuple[slice, ...], torch.Tensor]:
    """Normalised radius rho (1 = lesion border) on a box around the lesion."""
    r = spec.diameter_mm / 2.0
    half = int(math.ceil(r * reach / voxel_mm)) + 2
    c = np.round(spec.centre_vox).astype(int)
    box = tuple(slice(max(0, c[a] - half), min(shape[a], c[a] + half + 1)) for a in range(3))
    axes = [torch.arange(b.start, b.stop, dtype=torch.float32) for b in box]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
    rel = (grid - torch.tensor(spec.centre_vox, dtype=torch.float32)) * voxel_mm
    local = rel @ torch.tensor(spec.rotation, dtype=torch.float32)
    if spec.kind == "infarct" and spec.direction is not None:
        # wedge: within a sphere of radius r around the cortical point, inside a cone opening
        # towards the surface (apex inward) of half-angle ~35 degrees.
        dvec = torch.tensor(spec.direction, dtype=torch.float32)
        along = rel @ dvec  # >0 = inward
        apex_depth = r
        dist_apex = torch.linalg.norm(rel - apex_depth * dvec, dim=-1)
        cos_t = (apex_depth - along) / dist_apex.clamp_min(1e-3)
        rho = torch.maximum(torch.linalg.norm(rel, dim=-1) / r, (0.82 - cos_t) / 0.18 + 1.0)
    else:
        radii = torch.tensor(r * spec.radii_scale, dtype=torch.float32).clamp_min(0.6)
        rho = torch.linalg.norm(local / radii, dim=-1)
    sz = rho.shape
    ctrl = torch.randn((1, 1, 4, 4, 4), generator=gen)
    noise = torch.nn.functional.interpolate(ctrl, size=sz, mode="trilinear", align_corners=True)[0, 0]
    return box, rho + 0.12 * noise


def render_lesions(img: torch.Tensor, tissue: torch.Tensor, plan: list[LesionSpec],
                   rng: np.random.Generator, gen: torch.Generator, *,
                   tissue_means: tuple[float, float, float], contrast: str,
                   p_tissue_mimic: float = 0.0, amplitude_min: float = 0.07
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Paint the planned lesions into `img`; return the image and the lesion mask.

    With probability `p_tissue_mimic` a lesion (not a haemorrhage) takes the signal of another
    tissue instead of host + random amplitude: grey matter's for a white-matter lesion (CSF's
    for half of the infarcts), so it can only be told from normal anatomy by where it lies and
    its shape. No random number is drawn when it is 0, so earlier draws are reproduced exactly.
    `amplitude_min` is the lower bound of the signal step (0.07) and of a mass's oedema step
    (0.06 below 0.07, else the same bound); the draws are the same calls either way.
    """
    if not 0.0 < amplitude_min < 0.3:
        raise ValueError(f"lesion amplitude_min must lie in (0, 0.3), got {amplitude_min}")
    oedema_min = 0.06 if amplitude_min <= 0.07 else amplitude_min
    wm_mu, gm_mu, csf_mu = tissue_means
    voxel_mm = 2.0
    out = img.clone()
    mask = torch.zeros(img.shape, dtype=torch.bool)
    wm = (tissue == Tissue.WM).float()
    paren = wm + (tissue == Tissue.GM).float()
    for spec in plan:
        reach = 2.3 if spec.kind in ("mass", "oedema") else 1.6
        if spec.kind == "haemorrhage":
            reach = 2.0
        box, rho = _shape_rho(spec, img.shape, voxel_mm, gen, reach)
        host_mu = wm_mu if spec.kind in ("oedema", "demyelination") else (wm_mu + gm_mu) / 2
        amp = float(rng.uniform(amplitude_min, 0.4))
        sgn = _fluid_sign(rng, host_mu, csf_mu, contrast)
        if p_tissue_mimic > 0 and spec.kind != "haemorrhage" and rng.random() < p_tissue_mimic:
            mimic = csf_mu if spec.kind == "infarct" and rng.random() < 0.5 else gm_mu
            step = mimic + float(rng.normal(0.0, 0.03)) - host_mu
            sgn, amp = (1.0 if step >= 0 else -1.0), max(abs(step), 0.05)
        region = paren[box]
        soft = lambda edge, w: torch.sigmoid((edge - rho) / w)  # noqa: E731
        if spec.kind == "oedema":
            m = soft(1.0, rng.uniform(0.08, 0.2)) * (wm[box] + 0.3 * (region - wm[box]))
            delta = sgn * amp * m
        elif spec.kind == "mass":
            core = soft(1.0, 0.04) * region
            delta = core * sgn * amp
            if spec.diameter_mm > 12 and rng.random() < 0.6:  # rim + necrotic core
                rim_sgn = -sgn if rng.random() < 0.5 else sgn
                rim_amp = float(rng.uniform(0.1, 0.4))
                necrotic = soft(0.65, 0.04) * region
                delta = core * rim_sgn * rim_amp + necrotic * (sgn * max(amp, 0.15) - rim_sgn * rim_amp)
            oed_edge = float(rng.uniform(1.4, 2.2))
            oed = soft(oed_edge, 0.12) * (1 - core) * wm[box] * float(rng.random() < 0.75)
            oed_amp = float(rng.uniform(oedema_min, 0.3)) * _fluid_sign(rng, wm_mu, csf_mu, contrast)
            delta = delta + oed * oed_amp
            m = torch.maximum(core, oed)
        elif spec.kind == "haemorrhage":
            bloom = contrast == "SWI" or rng.random() < 0.35
            edge = float(rng.uniform(1.2, 1.6)) if bloom else 1.0
            m = soft(edge, 0.05) * region
            if bloom:
                delta = -m * max(amp, 0.15) * 1.5
            else:
                delta = m * sgn * amp
                if rng.random() < 0.3:  # haemosiderin rim
                    rim = (soft(edge, 0.05) - soft(0.8 * edge, 0.05)).clamp_min(0) * region
                    delta = delta - rim * float(rng.uniform(0.1, 0.3))
        else:  # demyelination, infarct: sharp(ish) border, fluid-ward signal
            w = 0.06 if spec.kind == "infarct" else float(rng.uniform(0.05, 0.12))
            m = soft(1.0, w) * region
            delta = m * sgn * amp
        out[box] = (out[box] + delta).clamp_min(0.0)
        mask[box] |= m > 0.5
    return out, mask
