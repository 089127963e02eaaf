"""Synthetic heads of any contrast and geometry, with lesions of every kind the screener claims.

SynthSeg-style: a real whole-head label map is deformed (random affine + smooth elastic field,
plus radial mass effect around a mass), every label gets a random intensity (fully random, or
jittered T1/T2/FLAIR/PD/SWI-like templates), then partial volume blur, lesions, bias field,
gamma, Rician noise and slice-thickness degradation (blur + decimation along a random axis,
with gaps) are applied. The result is on a 2 mm RAS grid, normalised exactly as at inference.

Public API (used by training and by `screener evaluate --synthetic`):
    SynthGenerator(config).sample(seed, spec=None) -> Sample
    SampleSpec(kind, diameter_mm, slice_thickness_mm, contrast, lesion=True) fixes the draw;
    Sample.image (1, X, Y, Z) float32, Sample.target (X, Y, Z) int64 (anatomy.Tissue),
    Sample.lesions (list of LesionSpec with centre_vox and diameter_mm), Sample.affine (grid -> RAS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from screener.model import lesions as lesion_lib
from screener.model.anatomy import LabelMap, Tissue, load_all

CONTRASTS = ("T1", "T2", "FLAIR", "PD", "SWI")
# (WM, GM, CSF) template means; head tissues stay random. Jittered at every draw.
TEMPLATES = {
    "T1": (0.78, 0.52, 0.12),
    "T2": (0.32, 0.48, 0.95),
    "FLAIR": (0.42, 0.58, 0.07),
    "PD": (0.62, 0.76, 0.88),
    "SWI": (0.55, 0.45, 0.75),
}


@dataclass(frozen=True)
class SynthConfig:
    label_maps_dir: str = "../shared/synth-label-maps"
    max_label_maps: int = 20
    grid_shape: tuple[int, int, int] = (96, 112, 96)
    voxel_mm: float = 2.0
    p_lesion: float = 0.6
    # Share of lesions given another tissue's signal (lesions.render_lesions); training only:
    # validation, calibration and the benchmark draw with 0 (held_out_config).
    p_tissue_mimic: float = 0.0
    # Relative weights of the template contrasts (CONTRASTS order) when a template is drawn;
    # empty = uniform, with the same random draws as before the option existed. Training only:
    # held_out_config empties it.
    contrast_weights: tuple[float, ...] = ()
    # Share of masses and oedemas drawn from large_lesion_mm instead of their usual sizes
    # (lesions.plan_lesions); training only: held_out_config sets it to 0.
    p_large_lesion: float = 0.0
    large_lesion_mm: tuple[float, float] = (50.0, 90.0)
    # FLAIR template heads draw grey matter at white matter's mean times a ratio from this range
    # instead of the template's grey matter (0.58 against 0.42: 38 % brighter, where real FLAIR
    # is about 0-20 %; benchmarks/parenchyma_spread.py). Empty = the template, with the same
    # draws as before the option existed. Training only: held_out_config empties it.
    flair_gm_ratio: tuple[float, ...] = ()
    # (a, b): a lesion head draws a + U{0..b-a} more lesions besides its plan (lesions.plan_lesions;
    # random kinds, but a demyelination head's stay demyelination), so a crop shows more distinct
    # lesions per CPU-second; (0, 0) = off, with the same draws as before the option existed.
    # Training only: held_out_config resets it.
    extra_lesions: tuple[int, int] = (0, 0)
    # Lower bound of a lesion's signal step (and of a mass's oedema step) on the 0-1 tissue scale
    # before bias, gamma and noise; the upper bounds stay 0.4 and 0.3. The default keeps the draws
    # of before the option existed (0.07 and 0.06). Training only: held_out_config resets it.
    # 0.15 was tried (configs/train-clear.yaml) and not released.
    lesion_amplitude_min: float = 0.07
    # Label intensities averaged over k**3 sub-voxel points of each output voxel (k = this value)
    # instead of taken at the voxel centre alone: with 1 (the default, the draws of before the
    # option existed) a 1 mm label map is sampled nearest-neighbour onto the 2 mm grid, so thin
    # structures alias into isolated voxels of another tissue's signal; real scanners average over
    # the voxel. The training target (tissue) stays the centre sample. Not reset by
    # held_out_config: it is how heads are rendered, not a training emphasis.
    label_supersample: int = 1
    # Brain stem (FreeSurfer label 16) signal as a fraction of the way from grey to white matter,
    # [low, high]; empty = drawn as the other deep grey structures (0 to 0.6), with the same draws
    # as before the option existed. Real T1 brain stems sit at 0.5 (Colin27's pons) to 1.0
    # (realdata-dev's normal T1, chris_t1) of that way, above what the deep grey draw reaches,
    # and both are read as a hyperintense finding by 0.6.1. Training only: held_out_config
    # resets it, so benchmark and calibration heads stay those every version was measured on.
    brainstem_fraction: tuple[float, ...] = ()
    # Share of heads whose anatomy is the label map's mirror image (left and right swapped by
    # sampling the map at points reflected through the head's centre along R), so that 17 training
    # label maps give 34 anatomies. 0 = off, with the same draws as before the option existed.
    # Training only: held_out_config resets it.
    p_mirror: float = 0.0
    p_random_contrast: float = 0.4
    p_skull_stripped: float = 0.2
    p_thick_slices: float = 0.6
    max_rotation_deg: float = 15.0
    max_shift_mm: float = 12.0
    scale_range: tuple[float, float] = (0.88, 1.12)
    # Scale of the smooth elastic displacement (mm per unit of the random field, whose SD is about
    # 0.56; times U(0.3, 1)). Held-out heads always draw with this default (held_out_config),
    # so a training run may deform its anatomy more without changing benchmark or calibration heads.
    elastic_mm: float = 3.0
    max_bias: float = 0.5
    noise_range: tuple[float, float] = (0.005, 0.04)
    thickness_range: tuple[float, float] = (1.0, 7.0)


BRAINSTEM_LABEL = 16  # FreeSurfer "Brain-Stem"
DEEP_GREY_MAX = 0.6  # deep grey structures draw their signal 0 to this far from grey to white matter


# Options that shape only the training stream. Held-out heads (validation, calibration, the
# benchmark) draw with each of them at its default, so those heads stay the same across versions
# whatever a training config sets; a new training-only option is added here and nowhere else.
TRAINING_ONLY_FIELDS = ("p_tissue_mimic", "contrast_weights", "p_large_lesion", "flair_gm_ratio",
                        "extra_lesions", "lesion_amplitude_min", "brainstem_fraction", "p_mirror",
                        "elastic_mm")


def held_out_config(cfg: SynthConfig) -> SynthConfig:
    """The training generator's config without its training-only emphasis (tissue mimicry,
    contrast weights, large lesions, FLAIR grey/white ratio, extra lesions, amplitude floor,
    brain stem signal, mirrored anatomy, stronger elastic deformation): every field named in
    TRAINING_ONLY_FIELDS back at its default. What validation, calibration and the benchmark draw
    with, so their heads stay the same across versions."""
    default = SynthConfig()
    return replace(cfg, **{name: getattr(default, name) for name in TRAINING_ONLY_FIELDS})


@dataclass(frozen=True)
class SampleSpec:
    """Fix parts of a draw (for the benchmark); None leaves a part random."""

    lesion: bool = True
    kind: str | None = None
    diameter_mm: float | None = None
    slice_thickness_mm: float | None = None
    contrast: str | None = None
    n_lesions: int | None = None


@dataclass
class Sample:
    image: torch.Tensor
    target: torch.Tensor
    affine: np.ndarray
    contrast: str
    slice_thickness_mm: float
    skull_stripped: bool
    lesions: list[lesion_lib.LesionSpec] = field(default_factory=list)

    @property
    def lesion_mask(self) -> torch.Tensor:
        return self.target == int(Tissue.LESION)


def _smooth_field(shape: tuple[int, ...], ctrl: int, gen: torch.Generator) -> torch.Tensor:
    """A smooth random field (zero mean, unit-ish SD) by trilinear upsampling of coarse noise."""
    coarse = torch.randn((1, 1, ctrl, ctrl, ctrl), generator=gen)
    return F.interpolate(coarse, size=shape, mode="trilinear", align_corners=True)[0, 0]


def gaussian_blur(vol: torch.Tensor, sigma_vox: tuple[float, float, float]) -> torch.Tensor:
    """Separable Gaussian blur of a 3D tensor; sigma per axis in voxels (0 = skip)."""
    out = vol[None, None]
    for axis, s in enumerate(sigma_vox):
        if s <= 0.05:
            continue
        radius = max(1, int(math.ceil(3 * s)))
        x = np.arange(-radius, radius + 1, dtype=np.float64)
        k = np.exp(-0.5 * np.minimum((x / s) ** 2, 60.0))  # clamp: no denormals
        k = torch.tensor(k / k.sum(), dtype=out.dtype)
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = k.numel()
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
        out = F.conv3d(F.pad(out, pad, mode="replicate"), k.view(shape))
    return out[0, 0]


class SynthGenerator:
    """Draws synthetic heads; deterministic for a given seed."""

    def __init__(self, config: SynthConfig, label_maps: list[LabelMap] | None = None) -> None:
        self.cfg = config
        self._contrast_p: np.ndarray | None = None  # template contrast probabilities; None: uniform
        if config.contrast_weights:
            p = np.asarray(config.contrast_weights, dtype=float)
            if p.shape != (len(CONTRASTS),) or (p < 0).any() or p.sum() <= 0:
                raise ValueError(f"contrast_weights needs {len(CONTRASTS)} non-negative weights "
                                 f"({', '.join(CONTRASTS)}), got {config.contrast_weights}")
            self._contrast_p = p / p.sum()
        if not 0.0 <= config.p_mirror <= 1.0:
            raise ValueError(f"synth.p_mirror must be in [0, 1], got {config.p_mirror}")
        if config.elastic_mm < 0:
            raise ValueError(f"synth.elastic_mm must be >= 0, got {config.elastic_mm}")
        if config.brainstem_fraction and (len(config.brainstem_fraction) != 2 or not
                                          0.0 <= config.brainstem_fraction[0]
                                          <= config.brainstem_fraction[1] <= 1.5):
            raise ValueError("synth.brainstem_fraction must be [low, high] with 0 <= low <= high "
                             f"<= 1.5, or empty; got {config.brainstem_fraction}")
        self.maps = label_maps if label_maps is not None else load_all(
            config.label_maps_dir, config.max_label_maps)
        self._vols = [torch.from_numpy(m.index)[None, None] for m in self.maps]
        self._centres = []
        for m in self.maps:
            ijk = np.argwhere(m.index > 0)
            centre_vox = (ijk.min(0) + ijk.max(0)) / 2.0
            self._centres.append(m.affine[:3, :3] @ centre_vox + m.affine[:3, 3])
        shape = config.grid_shape
        vox = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape],
                                   indexing="ij"), -1)
        self._grid_offsets = (vox - (np.array(shape) - 1) / 2.0) * config.voxel_mm  # mm from centre

    # ---- geometry -------------------------------------------------------------------------
    def _sampling_points(self, rng: np.random.Generator, gen: torch.Generator, centre: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
        """World points (X,Y,Z,3) to sample for each output voxel, and the output grid affine."""
        c = self.cfg
        angles = np.deg2rad(rng.uniform(-c.max_rotation_deg, c.max_rotation_deg, 3))
        cx, cy, cz = np.cos(angles)
        sx, sy, sz = np.sin(angles)
        rot = (np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
               @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
               @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]))
        lin = rot @ np.diag(rng.uniform(*c.scale_range, 3))
        shift = rng.uniform(-c.max_shift_mm, c.max_shift_mm, 3)
        if c.p_mirror > 0 and rng.random() < c.p_mirror:  # no draw when off: old streams kept
            lin = np.diag([-1.0, 1.0, 1.0]) @ lin  # R coordinate reflected through the centre
        pts = self._grid_offsets @ lin.T + centre + shift
        if c.elastic_mm > 0:
            disp = torch.stack([_smooth_field(self.cfg.grid_shape, 5, gen) for _ in range(3)], -1)
            pts = pts + disp.numpy().astype(np.float64) * c.elastic_mm * rng.uniform(0.3, 1.0)
        out_aff = np.eye(4)
        out_aff[:3, :3] = np.eye(3) * c.voxel_mm
        out_aff[:3, 3] = -(np.array(c.grid_shape) - 1) / 2.0 * c.voxel_mm  # output grid in its own frame
        return pts, out_aff

    def _sample_labels(self, map_idx: int, pts: np.ndarray) -> torch.Tensor:
        m = self.maps[map_idx]
        inv = np.linalg.inv(m.affine)
        ijk = pts @ inv[:3, :3].T + inv[:3, 3]
        size = np.array(m.index.shape, dtype=np.float64)
        norm = 2.0 * ijk / (size - 1) - 1.0
        grid = torch.from_numpy(norm[..., ::-1].copy()).float()[None]  # (1,X,Y,Z,3) as (z,y,x)
        out = F.grid_sample(self._vols[map_idx], grid, mode="nearest", padding_mode="zeros",
                            align_corners=True)
        return out[0, 0].round().long()

    def _supersampled_means(self, map_idx: int, pts: np.ndarray, mu: np.ndarray, sd: np.ndarray,
                            k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-voxel mean of the label means and SDs over k**3 sub-voxel points: each voxel's
        sampling point moved by the local Jacobian of `pts` (so elastic deformation and mass
        effect are followed) to the centres of a k x k x k subdivision of the voxel."""
        jac = np.gradient(pts, axis=(0, 1, 2))  # world mm per output voxel, along each grid axis
        steps = (np.arange(k) + 0.5) / k - 0.5
        mu_t, sd_t = torch.from_numpy(mu).float(), torch.from_numpy(sd).float()
        mean = torch.zeros(pts.shape[:3])
        spread = torch.zeros(pts.shape[:3])
        for a in steps:
            for b in steps:
                for g in steps:
                    lab = self._sample_labels(map_idx, pts + a * jac[0] + b * jac[1] + g * jac[2])
                    mean += mu_t[lab]
                    spread += sd_t[lab]
        n = float(k**3)
        return mean / n, spread / n

    # ---- appearance -----------------------------------------------------------------------
    def _label_means(self, rng: np.random.Generator, contrast: str, m: LabelMap
                     ) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
        n = len(m.labels)
        mu = rng.uniform(0.0, 1.0, n)
        if contrast == "random":
            wm, gm, csf = rng.uniform(0.0, 1.0, 3)
        else:
            wm, gm, csf = (float(np.clip(v + rng.normal(0, 0.06), 0.02, 1.0))
                           for v in TEMPLATES[contrast])
            if contrast == "FLAIR" and self.cfg.flair_gm_ratio:
                if len(self.cfg.flair_gm_ratio) != 2:
                    raise ValueError("synth.flair_gm_ratio must be [low, high] or empty")
                gm = float(wm * rng.uniform(*self.cfg.flair_gm_ratio))
        jitter = rng.normal(0, 0.02, n)
        for i, t in enumerate(m.tissue):
            if t == Tissue.WM:
                mu[i] = wm + jitter[i]
            elif t == Tissue.GM:
                mu[i] = gm + jitter[i]
            elif t in (Tissue.VENTRICLE, Tissue.CSF):
                mu[i] = csf + jitter[i]
            if m.deep_grey[i]:
                frac = rng.uniform(0.0, DEEP_GREY_MAX)
                if self.cfg.brainstem_fraction and int(m.labels[i]) == BRAINSTEM_LABEL:
                    lo, hi = self.cfg.brainstem_fraction  # same draw, rescaled: later draws unchanged
                    frac = lo + (hi - lo) * frac / DEEP_GREY_MAX
                mu[i] = gm + frac * (wm - gm) + jitter[i]
        mu[0] = rng.uniform(0.0, 0.06)  # air
        sd = rng.uniform(0.005, 0.05, n)
        return np.clip(mu, 0.0, 1.2), sd, (wm, gm, csf)

    def _template_contrast(self, rng: np.random.Generator) -> str:
        if self._contrast_p is None:
            return CONTRASTS[int(rng.integers(len(CONTRASTS)))]
        return CONTRASTS[int(rng.choice(len(CONTRASTS), p=self._contrast_p))]

    def sample(self, seed: int, spec: SampleSpec | None = None) -> Sample:
        """Draw one synthetic head. Same seed and spec -> same sample."""
        c = self.cfg
        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(int(seed) % (2**63))
        map_idx = int(rng.integers(len(self.maps)))
        m = self.maps[map_idx]
        pts, out_aff = self._sampling_points(rng, gen, self._centres[map_idx])
        labels = self._sample_labels(map_idx, pts)
        tissue = torch.from_numpy(m.tissue)[labels]

        want_lesion = spec.lesion if spec is not None else bool(rng.random() < c.p_lesion)
        plan: list[lesion_lib.LesionSpec] = []
        if want_lesion:
            plan = lesion_lib.plan_lesions(rng, tissue, c.voxel_mm, spec, p_large=c.p_large_lesion,
                                           large_mm=tuple(c.large_lesion_mm),
                                           extra=tuple(c.extra_lesions))
            masses = [p for p in plan if p.kind == "mass"]
            if masses:  # mass effect: resample anatomy pushed away from each mass centre
                pts = lesion_lib.apply_mass_effect(pts, masses, out_aff, rng)
                labels = self._sample_labels(map_idx, pts)
                tissue = torch.from_numpy(m.tissue)[labels]

        contrast = spec.contrast if spec is not None and spec.contrast else (
            "random" if rng.random() < c.p_random_contrast else self._template_contrast(rng))
        mu, sd, (wm, gm, csf) = self._label_means(rng, contrast, m)
        texture = gaussian_blur(torch.randn(labels.shape, generator=gen), (0.7, 0.7, 0.7))
        if c.label_supersample > 1:
            mean, spread = self._supersampled_means(map_idx, pts, mu, sd, c.label_supersample)
            img = mean + spread * texture
        else:
            img = torch.from_numpy(mu).float()[labels] + torch.from_numpy(sd).float()[labels] * texture
        img = gaussian_blur(img, tuple(rng.uniform(0.3, 0.9, 3)))  # partial volume

        lesion_mask = torch.zeros(labels.shape, dtype=torch.bool)
        if plan:
            img, lesion_mask = lesion_lib.render_lesions(img, tissue, plan, rng, gen,
                                                         tissue_means=(wm, gm, csf),
                                                         contrast=contrast,
                                                         p_tissue_mimic=c.p_tissue_mimic,
                                                         amplitude_min=c.lesion_amplitude_min)
        skull_stripped = bool(rng.random() < c.p_skull_stripped)
        brain = (tissue == Tissue.WM) | (tissue == Tissue.GM) | (tissue == Tissue.VENTRICLE) | lesion_mask
        if skull_stripped:
            keep = gaussian_blur(brain.float(), (1.0, 1.0, 1.0)) > rng.uniform(0.2, 0.6)
            img = torch.where(keep, img, torch.zeros_like(img))

        bias = torch.exp(_smooth_field(labels.shape, 4, gen) * rng.uniform(0.0, c.max_bias))
        img = img.clamp_min(0) * bias
        img = img.clamp_min(0) ** float(np.exp(rng.normal(0.0, 0.2)))
        sigma_n = rng.uniform(*c.noise_range) * float(img.max())
        n1 = torch.randn(img.shape, generator=gen) * sigma_n
        n2 = torch.randn(img.shape, generator=gen) * sigma_n
        img = torch.sqrt((img + n1) ** 2 + n2**2)
        if skull_stripped:
            img = torch.where(keep, img, torch.zeros_like(img))

        thickness = c.voxel_mm
        if spec is not None and spec.slice_thickness_mm is not None:
            thickness = float(spec.slice_thickness_mm)
        elif rng.random() < c.p_thick_slices:
            thickness = float(rng.uniform(*c.thickness_range))
        if thickness > c.voxel_mm * 1.01:
            img = degrade_slices(img, int(rng.integers(3)), thickness, c.voxel_mm,
                                 gap_fraction=float(rng.uniform(0.0, 0.3)))

        target = tissue.clone()
        target[lesion_mask] = int(Tissue.LESION)
        from screener.preprocess import normalize_intensity

        image = normalize_intensity(img[None])
        return Sample(image=image.float(), target=target, affine=out_aff,
                      contrast=contrast, slice_thickness_mm=thickness,
                      skull_stripped=skull_stripped, lesions=plan)


def degrade_slices(img: torch.Tensor, axis: int, thickness_mm: float, voxel_mm: float,
                   gap_fraction: float = 0.0) -> torch.Tensor:
    """Simulate thick slices along `axis`: slice-profile blur, then sampling every
    thickness*(1+gap) mm and linear interpolation back to the grid (as resampling a real
    thick-slice series onto the working grid does)."""
    sigma = [0.0, 0.0, 0.0]
    sigma[axis] = 0.42 * thickness_mm / voxel_mm
    blurred = gaussian_blur(img, tuple(sigma))
    n = img.shape[axis]
    spacing_vox = thickness_mm * (1.0 + gap_fraction) / voxel_mm
    n_low = max(2, int(round(n / spacing_vox)))
    moved = blurred.movedim(axis, -1)[None]  # (1, a, b, n)
    flat = moved.reshape(1, -1, n)
    low = F.interpolate(flat, size=n_low, mode="linear", align_corners=True)
    back = F.interpolate(low, size=n, mode="linear", align_corners=True)
    return back.reshape(moved.shape)[0].movedim(-1, axis)
