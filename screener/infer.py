"""Model loading, device choice and prediction on a series' own grid.

A series is resampled (MONAI SpatialResample, by world coordinates) onto an axis-aligned RAS
working grid at the network's spacing that covers the whole series, normalised, passed through
the network (sliding window when large), combined with tissue-conditional outlier statistics,
and the probabilities are resampled back onto the series' own grid, so the anomaly map
overlays the input exactly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from screener.config import repo_path
from screener.model.anatomy import Tissue
from screener.model.outlier import OutlierConfig
from screener.types import SeriesVolume

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelConfig:
    weights: str = "weights/screener-synth-v1"
    # Sliding-window tile = the training crop: the network's instance norms were fitted on
    # crops, and whole-volume windows (mostly air) shift their statistics (measured on held-out
    # synthetic heads at iteration 3000: brain Dice 0.82-0.90 with 64x80x64 tiles, 0.64-0.76
    # with the whole volume).
    # None: one window over the whole head box. On 40 held-out calibration heads (weights
    # 0.2.0, benchmarks/inference_settings.py --windows 64x80x64@0.5 box) it ran predict() 4x
    # faster but lost brain Dice (0.853 against 0.891) at the same lesion hits (16/30, 15/30),
    # so the tiles stay the default.
    roi_size: tuple[int, int, int] | None = (64, 80, 64)
    sw_overlap: float = 0.5
    # Tiles per network call: on this 2-core CPU the 8 tiles of a 96x112x96 box took 0.55 s in
    # pairs against 1.28 s one at a time, same peak RSS (4 at a time: 0.55 s, +60 MB).
    sw_batch_size: int = 2
    # Test-time augmentation: average the network's class probabilities over the head box and
    # its left-right mirror image (the working grid's first axis is R). Doubles inference time.
    # Off: on 60 calibration heads with weights 0.5.0 it hit 26/45 lesions against 27 without
    # (hit-gated AUROC 0.400 against 0.406) at 1.6x the predict() time
    # (benchmarks/inference_settings.py --windows 64x80x64@0.5 64x80x64@0.5+flip).
    tta_flip: bool = False
    # The network in bfloat16 on CPU ("off", "on", or "auto": on where the CPU computes bfloat16
    # natively, AMX or AVX512-BF16; elsewhere emulated bfloat16 is slower than float32). Tiles
    # are blended and softmaxed in float32 either way. CUDA always runs float16 autocast.
    # "auto" since 2026-12-03, by the rule in docs/speed-log.md: on 60 calibration heads 27/45
    # hits against 28/45, AUROC 0.421 against 0.418, lesion-free false volume 17.1 against
    # 16.3 ml; realdata-dev decisions unchanged, mean Dice 0.382 both (largest drop 0.002);
    # `screen` median 10.0 s against 11.9 s (6 alternating pairs). report.json's model block
    # says which precision ran.
    cpu_bf16: str = "auto"
    # The learned lesion channel's logit is raised by this much before fusion (0 = as trained):
    # its voxel threshold p >= 0.5 becomes p >= sigmoid(-offset) of the network's own output.
    # The network is cautious: on lesion-free calibration heads its findings are small (median
    # about 1 ml) while in most missed lesions its probability stays low but above zero. The
    # diagnostics' learned_prob stays the network's own output.
    learned_logit_offset: float = 0.0
    # Fusion of the learned lesion channel with outlier z: q = sigmoid(slope * (|z| - z0)).
    outlier_z0: float = 4.0
    outlier_slope: float = 2.0
    use_outlier: bool = True
    outlier: OutlierConfig = field(default_factory=OutlierConfig)
    # Judge signal in the brain's hull, not only where the network sees brain: extra-cerebral
    # CSF inside the brain mask closed by a ball of this radius (sulci, and lesions whose
    # fluid-like signal the network reads as CSF) takes part in the outlier fusion, and outside
    # the brain (brain_prob < 0.5) a region of fused p >= 0.5 counts only where it is at least
    # 2 * hull_opening_vox + 1 voxels thick (binary opening by a cube): sulcal CSF with partial
    # volume gives thin sheets of outliers, a lesion read as CSF gives a blob. 0 = off
    # (findings only where brain_prob >= the brain threshold).
    # Measured on 60 calibration heads with weights 0.6.0 (benchmarks/inference_settings.py
    # --windows 64x80x64@0.5 64x80x64@0.5+hull6 then 64x80x64@0.5+hull6+open1), against the rule
    # fixed beforehand (hits >= 30/45, hit-gated AUROC@0.5 ml >= 0.418, median false volume on
    # the 15 lesion-free heads <= 24.5 ml): off 28/45, 0.418, 16.3 ml; hull 6 mm without the
    # opening 35/45, 0.400, 78.8 ml (sulcal sheets; rejected); hull 6 mm + opening 1 voxel
    # 30/45, 0.441, 13.8 ml, which met the rule. Run through scripts/release.sh as a candidate
    # 0.6.1, it did not carry over: held-out synthetic benchmark (seed 2, 200 heads) lesions
    # >= 10 mm found 65/94 against 64/94; on realdata-dev the three MS FLAIR cases drew more
    # findings (24, 17, 16 against 15, 14, 10) and lost Dice (0.283, 0.411, 0.226 against 0.437,
    # 0.448, 0.412): mean Dice 0.307 against 0.382, below the baseline's 0.320 (n = 5). So it is
    # off and 0.6.0 stays as it was. 1.3 s instead of 1.0 s per head when on.
    hull_closing_mm: float = 0.0
    hull_opening_vox: int = 1
    # The outlier term does not judge the judged region's outermost this many voxels (0 = off;
    # the learned channel still does). On lesion-free development heads with skull the fused
    # map's false findings are hundreds of specks, 80-97 % of their volume within 2 mm of the
    # brain's surface and brighter than expected: partial volume with what lies outside.
    outlier_rim_vox: int = 0
    # With outlier_rim_vox: in that rim the outlier term still counts where its region (q >= 0.5)
    # is at least 2 * K + 1 voxels thick (survives an opening by that cube), so a lesion at the
    # surface is judged and specks are not (0 = the rim is not judged at all).
    outlier_rim_opening_vox: int = 0
    # Diagnostics only (predict(..., diagnostics=True); 0 = not computed): the tissue map against
    # the other hemisphere, symmetry.tissue_asymmetry smoothed by this many mm and
    # symmetry.misplaced_grey. Not part of the fused map: on development heads (0.6.1,
    # benchmarks/mirror_tissue.py --n 60 --seed 7) neither set any of the 6 missed lesions
    # measuring >= 10 mm apart from its own head's normal asymmetry.
    asymmetry_sigma_mm: float = 0.0
    # Score each finding with the weights' finding verifier (verifier.json beside the network,
    # screener/model/verifier.py) when the bundle ships one; off: findings keep the fused map's
    # score p * (1 - exp(-V / decide.score_volume_scale_ml)). A bundle that ships a verifier is
    # calibrated with it on: switching it off leaves that operating point meaningless for the
    # scores (compare settings with benchmarks/finding_verifier.py, not with a screen).
    use_verifier: bool = True
    # Grid-phase averaging: the whole prediction (resampling onto the 2 mm working grid,
    # network, outlier term) is repeated with the working grid shifted by each of these offsets
    # (mm, RAS), and the brain and abnormality maps are averaged on the series grid. One offset
    # (0, 0, 0) is a single prediction. Each offset costs one more prediction. Probe that
    # prompted it (2026-12-07, weights 0.7.1, chris_t1): shifting the grid by 1 mm changed the
    # head's false-finding volume from 5.56 ml to between 3.94 and 7.29 ml.
    # Judged by the rule in docs/model-experiments.md ("Grid-phase averaging"), weights 0.7.1,
    # [[0, 0, 0], [1, 1, 1]] against one grid: on 268 fresh seed-41 heads lesion-free false
    # volume median 5.4 against 8.3 ml, fused hits 149/188 against 154/188 (McNemar p = 0.125;
    # infarcts 18/32 against 24/32), sensitivity at 90 % specificity 0.39 against 0.38; real
    # normals 1.28 and 5.18 against 1.31 and 5.51 ml; realdata-dev mean Dice 0.418 both. But
    # `screen` took 10.8 s against 8.1 s (AVX2 host, float32), above the 8 s goal, so it stays
    # off. The shipped calibration was fitted with one grid: turning it on leaves the screen
    # without an operating point (calibration_mismatch) until the calibration is re-run with
    # the same config (screener/binding.py).
    grid_offsets_mm: tuple[tuple[float, ...], ...] = ((0.0, 0.0, 0.0),)

    def __post_init__(self) -> None:
        if not self.grid_offsets_mm or any(
                len(o) != 3 or not all(np.isfinite(v) for v in o) for o in self.grid_offsets_mm):
            raise ValueError("model.grid_offsets_mm must be a non-empty list of finite 3-vectors, "
                             f"got {self.grid_offsets_mm!r}")


@dataclass
class LoadedModel:
    net: Any
    name: str
    version: str
    weights_sha256: str
    device: str
    voxel_mm: float
    metadata: dict[str, Any]
    weights_dir: Path
    config: ModelConfig
    verifier: Any = None  # screener.model.verifier.Verifier, when shipped and used


@dataclass
class Prediction:
    """Probabilities on the series' own grid (same shape and affine as the input volume)."""

    brain_prob: np.ndarray
    lesion_prob: np.ndarray
    # Diagnostics, only with predict(..., diagnostics=True): each costs a resampling to the
    # series grid, which the screen itself does not need.
    learned_prob: np.ndarray | None = None  # the network's lesion channel alone
    outlier_z: np.ndarray | None = None  # signed tissue-conditional z-score
    tissue: np.ndarray | None = None  # argmax tissue class (uint8), anatomy.Tissue
    asymmetry: np.ndarray | None = None  # symmetry.tissue_asymmetry, with asymmetry_sigma_mm > 0
    misplaced_grey: np.ndarray | None = None  # symmetry.misplaced_grey, likewise
    # Where findings may lie (brain plus, with ModelConfig.hull_closing_mm, the CSF inside the
    # brain's hull); None = the brain itself. See assessment_mask().
    assess_prob: np.ndarray | None = None
    # Largest brain cross-section (cm2) on a face of the head box that lies inside the grid:
    # brain there continued where the network did not look (qc.brain_reasons does not see it).
    brain_at_box_edge_cm2: float = 0.0
    timing_s: dict[str, float] = field(default_factory=dict)  # preprocess, infer


def cpu_bf16_enabled(setting: str | bool) -> bool:
    """model.cpu_bf16: "on", "off", or "auto" (on where torch reports AMX tiles or AVX512-BF16).
    YAML reads a bare on/off as true/false; both spellings are accepted."""
    if isinstance(setting, bool):
        return setting
    if setting not in ("on", "off", "auto"):
        raise ValueError(f"model.cpu_bf16 must be on, off or auto, not {setting!r}")
    if setting != "auto":
        return setting == "on"
    import torch

    probes = [getattr(torch.cpu, name, None)
              for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(bool(p()) for p in probes if p is not None)


def network_precision(model: "LoadedModel") -> str:
    """The precision predict() runs the network in on this machine: float16 (CUDA autocast),
    bfloat16 (model.cpu_bf16) or float32."""
    if str(model.device).startswith("cuda"):
        return "float16"
    return "bfloat16" if cpu_bf16_enabled(model.config.cpu_bf16) else "float32"


def choose_device(preference: str = "auto") -> str:
    import torch

    if preference == "cpu":
        return "cpu"
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda requested but no CUDA device is available")
        return "cuda:0"
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def load_model(cfg: ModelConfig, device: str = "auto") -> LoadedModel:
    """Load and verify the weights bundle named in the config; build the network on `device`."""
    import torch

    from screener.model.bundle import load_bundle
    from screener.model.verifier import VERIFIER_FILE, Verifier
    from screener.model.networks import NetworkConfig, build_network
    from screener.config import from_mapping

    cpu_bf16_enabled(cfg.cpu_bf16)  # a misspelt setting stops here, not in every study's predict
    wdir = repo_path(cfg.weights)
    meta, state = load_bundle(wdir)
    net_cfg = from_mapping(NetworkConfig, meta["network"])
    net = build_network(net_cfg)
    net.load_state_dict(state)
    dev = choose_device(device)
    torch.set_flush_denormal(True)  # denormals made some ops 20-40x slower on CPU (design notes)
    net.to(dev).eval()
    spacing = float(meta["network_data_format"]["inputs"]["image"]["spacing_mm"])
    verifier = None
    if cfg.use_verifier and (wdir / VERIFIER_FILE).exists():  # checksum verified with the bundle
        verifier = Verifier.load(wdir / VERIFIER_FILE)
    return LoadedModel(net=net, name=meta["name"], version=meta["version"],
                       weights_sha256=meta["weights_sha256"], device=dev, voxel_mm=spacing,
                       metadata=meta, weights_dir=wdir, config=cfg, verifier=verifier)


def working_grid(shape: tuple[int, ...], affine: np.ndarray, voxel_mm: float, multiple: int,
                 offset_mm: tuple[float, ...] = (0.0, 0.0, 0.0)
                 ) -> tuple[np.ndarray, tuple[int, int, int]]:
    """RAS axis-aligned grid at `voxel_mm` covering the world bounding box of a volume, its
    voxel centres moved by `offset_mm`."""
    corners = np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                        for k in (0, shape[2] - 1)])
    world = (affine @ corners.T).T[:, :3]
    lo, hi = world.min(0), world.max(0)
    n = np.ceil((hi - lo) / voxel_mm).astype(int) + 1
    n = (np.ceil(n / multiple) * multiple).astype(int)
    centre = (lo + hi) / 2.0
    grid_aff = np.eye(4)
    grid_aff[:3, :3] *= voxel_mm
    grid_aff[:3, 3] = centre - (n - 1) / 2.0 * voxel_mm + np.asarray(offset_mm, dtype=np.float64)
    return grid_aff, (int(n[0]), int(n[1]), int(n[2]))


def _axis_permutation(xform: np.ndarray, dst_shape: tuple[int, ...], tol_vox: float = 1e-3
                      ) -> list[int] | None:
    """For a dst-index -> src-index transform whose 3x3 part is a permuted diagonal (grids
    that share their axes up to order, flips and scale), the dst axis feeding each src axis;
    None otherwise. Off-diagonal terms moving no point by more than `tol_vox` count as zero."""
    m = xform[:3, :3]
    reach = np.abs(m) * (np.asarray(dst_shape, dtype=np.float64)[None, :3])
    perm = [int(np.argmax(reach[i])) for i in range(3)]
    if sorted(perm) != [0, 1, 2] or any(abs(m[i, perm[i]]) < 1e-9 for i in range(3)):
        return None
    off = reach.copy()
    off[range(3), perm] = 0.0
    return perm if float(off.sum(axis=1).max()) <= tol_vox else None


def _interp_axis(a: np.ndarray, axis: int, coords: np.ndarray) -> np.ndarray:
    """Linear interpolation of `a` along `axis` at fractional indices `coords`; samples beyond
    the array read as 0 (grid_sample's zero padding, voxel centres at integer indices).

    Gathers and weights with torch, which runs them on every core: 4x faster than the same
    NumPy on this 2-core CPU for the upsampling back to a 1 mm series, with identical values.
    """
    import torch

    n = a.shape[axis]
    src = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    i0 = np.floor(coords).astype(np.int64)
    w = (coords - i0).astype(np.float32)
    shape = [1] * a.ndim
    shape[axis] = -1
    out: torch.Tensor | None = None
    for idx, wt in ((i0, 1.0 - w), (i0 + 1, w)):
        inside = (idx >= 0) & (idx < n)
        term = src.index_select(axis, torch.from_numpy(np.clip(idx, 0, n - 1)))  # a copy
        term.mul_(torch.from_numpy((wt * inside).astype(np.float32)).reshape(shape))
        out = term if out is None else out.add_(term)
    assert out is not None
    return out.numpy()


def resample(data: np.ndarray, src_affine: np.ndarray, dst_affine: np.ndarray,
             dst_shape: tuple[int, ...], mode: str = "bilinear") -> np.ndarray:
    """Resample channel-first `data` (C, ...) by world coordinates (MONAI SpatialResample).

    Between grids whose axes coincide up to order, flips and spacing (an axial, sagittal or
    coronal series and the RAS working grid), trilinear interpolation is separable: three 1D
    passes give the same values as MONAI's 3D grid sampling (tested) several times faster.
    """
    src_aff = np.asarray(src_affine, dtype=np.float64)
    dst_aff = np.asarray(dst_affine, dtype=np.float64)
    xform = np.linalg.solve(src_aff, dst_aff)  # dst voxel index -> src voxel index
    perm = _axis_permutation(xform, dst_shape) if mode == "bilinear" else None
    if perm is not None and data.ndim == 4:
        out = np.asarray(data, dtype=np.float32)
        for i in range(3):  # src axis i becomes dst axis perm[i], still at position i + 1
            j = perm[i]
            coords = xform[i, j] * np.arange(dst_shape[j], dtype=np.float64) + xform[i, 3]
            out = _interp_axis(out, i + 1, coords)
        order = [0] + [1 + perm.index(j) for j in range(3)]
        return np.ascontiguousarray(out.transpose(order))
    return _resample_monai(data, src_aff, dst_aff, dst_shape, mode)


def _resample_monai(data: np.ndarray, src_affine: np.ndarray, dst_affine: np.ndarray,
                    dst_shape: tuple[int, ...], mode: str) -> np.ndarray:
    import torch
    from screener.monai_import import import_monai

    import_monai()  # without the optional modules it never uses
    from monai.data import MetaTensor
    from monai.transforms import SpatialResample

    img = MetaTensor(torch.as_tensor(np.ascontiguousarray(data), dtype=torch.float32),
                     affine=torch.as_tensor(src_affine, dtype=torch.float64))
    out = SpatialResample(mode=mode, padding_mode="zeros", align_corners=True)(
        img, dst_affine=torch.as_tensor(dst_affine, dtype=torch.float64),
        spatial_size=tuple(int(s) for s in dst_shape))
    return np.asarray(out.detach().cpu().numpy() if hasattr(out, "detach") else out, dtype=np.float32)


def largest_label(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean mask (all False when empty)."""
    from scipy import ndimage

    lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(sizes.argmax())


def raise_logit(p: np.ndarray, offset: float) -> np.ndarray:
    """sigmoid(logit(p) + offset), elementwise; p itself when offset is 0. Voxels where p is 0
    (off the judged brain) stay 0."""
    if offset == 0:
        return p
    q = np.clip(p.astype(np.float64), 1e-12, 1.0 - 1e-12)
    out = 1.0 / (1.0 + (1.0 - q) / q * np.exp(-offset))
    return np.where(p > 0, out, 0.0).astype(p.dtype)


def outlier_probability(z: np.ndarray, weight: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """The outlier term of the fused map: weight * sigmoid(slope * (|z| - z0)), `weight` being
    the probability that the voxel is tissue the z-score may judge."""
    arg = np.clip(cfg.outlier_slope * (np.abs(z) - cfg.outlier_z0), -30.0, 30.0)
    return weight / (1.0 + np.exp(-arg))


def assessment_mask(pred: Prediction, brain_threshold: float) -> np.ndarray:
    """Voxels where findings may lie: the brain (brain_prob >= threshold), or the brain's hull
    when the model judges signal there (ModelConfig.hull_closing_mm)."""
    region = pred.assess_prob if pred.assess_prob is not None else pred.brain_prob
    return region >= brain_threshold


def brain_hull(keep: np.ndarray, radius_mm: float, voxel_mm: float) -> np.ndarray:
    """The brain mask closed with a ball of `radius_mm` and its holes filled (bool): sulci and
    surface-open concavities narrower than about twice the radius join the brain."""
    from scipy import ndimage

    r = max(1, int(round(radius_mm / voxel_mm)))
    ax = np.arange(-r, r + 1)
    ball = (ax[:, None, None] ** 2 + ax[None, :, None] ** 2 + ax[None, None, :] ** 2) <= r * r
    padded = np.pad(np.asarray(keep, bool), r + 1)
    closed = ndimage.binary_closing(padded, structure=ball)
    inner = tuple(slice(r + 1, -(r + 1)) for _ in range(3))
    return ndimage.binary_fill_holes(closed[inner] | np.asarray(keep, bool))


def hull_region(brain: np.ndarray, judged: np.ndarray, lesion: np.ndarray, opening_vox: int
                ) -> np.ndarray:
    """Where findings may lie when the hull is judged: the brain (probability), plus the judged
    voxels off the brain (brain < 0.5) that belong to a region of lesion >= 0.5 at least
    2 * opening_vox + 1 voxels thick (survives a binary opening by that cube)."""
    outside = judged * (brain < 0.5)
    if opening_vox > 0:
        outside = outside * thick_regions((lesion * outside) >= 0.5, opening_vox)
    return np.maximum(brain, outside).astype(np.float32)


def thick_regions(mask: np.ndarray, opening_vox: int) -> np.ndarray:
    """The parts of `mask` at least 2 * opening_vox + 1 voxels thick: what survives a binary
    opening by that cube (specks and thin sheets do not)."""
    from scipy import ndimage

    k = 2 * opening_vox + 1
    return ndimage.binary_opening(mask, structure=np.ones((k, k, k), bool))


def largest_component(mask: np.ndarray, dilate: int = 1) -> np.ndarray:
    """The brain: the largest 26-connected component of `mask`, dilated by `dilate` voxels
    (float 0/1).

    The brain is one connected organ: islands of "brain" in the background, the eyes or the
    neck are network errors, and judging signal there would only make false findings. The
    component is chosen after a one-voxel opening, so an eye or a piece of skull base that
    hangs on the brain by a thread of voxels (the optic nerve) falls away; the chosen component
    then gets its outline back (one dilation inside the original mask).
    """
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    ball = ndimage.generate_binary_structure(3, 1)
    core = largest_label(ndimage.binary_opening(mask, structure=ball))
    if not core.any():  # too thin to survive the opening: fall back to the plain component
        core = largest_label(mask)
    keep = ndimage.binary_dilation(core, structure=ball) & mask
    keep = ndimage.binary_fill_holes(keep | core)
    if dilate:
        keep = ndimage.binary_dilation(keep, iterations=dilate)
    return keep.astype(np.float32)


def head_box(x: np.ndarray, multiple: int, margin: int = 6, level: float = 0.08
             ) -> tuple[slice, slice, slice]:
    """Bounding box (on the working grid) of the head in a normalised image, with a margin.

    Sliding-window tiles of pure background (air around the head, the padding around an
    oblique slab) give arbitrary network output through instance normalisation: "brain" in the
    air. The network therefore only runs over the head's box; everything outside it is
    background. The head is the largest connected region above `level` (of the normalised
    [0, 1] range) after light smoothing; box sides are rounded up to `multiple` where the grid
    allows.
    """
    from scipy import ndimage

    smooth = ndimage.uniform_filter(np.asarray(x, dtype=np.float32), 3)
    head = largest_label(smooth > level)
    if not head.any():
        return (slice(0, x.shape[0]), slice(0, x.shape[1]), slice(0, x.shape[2]))
    idx = np.argwhere(head)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + margin + 1, x.shape)
    box = []
    for a, b, n in zip(lo, hi, x.shape):
        size = min(int(np.ceil((b - a) / multiple) * multiple), n)
        a = int(min(a, n - size))
        box.append(slice(a, a + size))
    return tuple(box)  # type: ignore[return-value]


def box_edge_area_cm2(mask: np.ndarray, box: tuple[slice, ...], voxel_mm: float) -> float:
    """Largest cross-section (cm2) of `mask` on a face of `box` that is not a face of the grid."""
    from screener.qc import face_areas_cm2

    inside = [(axis, end) for axis, sl in enumerate(box) for end, grid_face in
              ((-1, sl.start == 0), (1, sl.stop == mask.shape[axis])) if not grid_face]
    areas = face_areas_cm2(mask[box], (voxel_mm,) * 3)
    return max((a for axis, end, a in areas if (axis, end) in inside), default=0.0)


def predict(volume: SeriesVolume, model: LoadedModel, diagnostics: bool = False) -> Prediction:
    """Run the model on one 3D series; probabilities come back on the series' own grid.

    With `diagnostics`, the learned lesion channel alone, the outlier z-map and the tissue
    labels come back too (on the same grid). With several `model.grid_offsets_mm` the brain,
    abnormality, learned and assessed maps are the mean over the shifted grids, the brain's
    cross-section at the box edge their largest, and the other diagnostics the first grid's.
    """
    offsets = model.config.grid_offsets_mm
    preds = [_predict_on_grid(volume, model, diagnostics, tuple(o)) for o in offsets]
    if len(preds) == 1:
        return preds[0]
    first = preds[0]

    def mean(name: str) -> np.ndarray:
        return np.mean([getattr(p, name) for p in preds], axis=0).astype(np.float32)

    first.brain_prob, first.lesion_prob = mean("brain_prob"), mean("lesion_prob")
    if first.learned_prob is not None:
        first.learned_prob = mean("learned_prob")
    if first.assess_prob is not None:
        first.assess_prob = mean("assess_prob")
    first.brain_at_box_edge_cm2 = max(p.brain_at_box_edge_cm2 for p in preds)
    first.timing_s = {k: sum(p.timing_s[k] for p in preds) for k in first.timing_s}
    return first


def _predict_on_grid(volume: SeriesVolume, model: LoadedModel, diagnostics: bool,
                     offset_mm: tuple[float, ...]) -> Prediction:
    """`predict` on the working grid moved by `offset_mm`."""
    import torch
    from screener.monai_import import import_monai

    import_monai()  # without the optional modules it never uses
    from monai.inferers import sliding_window_inference

    from screener.model.outlier import outlier_z
    from screener.preprocess import normalize_intensity

    import time

    t0 = time.perf_counter()
    data = volume.data if volume.data.ndim == 3 else volume.data[..., 0]
    cfg = model.config
    grid_aff, grid_shape = working_grid(data.shape, volume.affine, model.voxel_mm, 16, offset_mm)
    # Outside the field of view must read as background: shift so the darkest voxel is 0 before
    # zero-padded resampling (z-scored inputs have a negative background; normalisation below
    # is shift-invariant).
    low = float(np.nanmin(data)) if data.size else 0.0
    work = resample((data - low)[None], volume.affine, grid_aff, grid_shape)
    x = normalize_intensity(torch.from_numpy(work))
    from screener.model.symmetry import network_input

    x = network_input(x, int((model.metadata.get("network") or {}).get("in_channels", 1)),
                      model.voxel_mm)
    t1 = time.perf_counter()
    box = head_box(x[0].numpy(), 16)
    probs = np.zeros((len(Tissue),) + tuple(grid_shape), dtype=np.float32)
    probs[int(Tissue.NONBRAIN)] = 1.0  # outside the head's box: background
    cuda = str(model.device).startswith("cuda")  # mixed precision where a GPU runs it
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
        inp = x[(slice(None),) + box][None].to(model.device)
        roi = tuple(min(r, int(s)) for r, s in zip(cfg.roi_size or inp.shape[2:], inp.shape[2:]))

        def bf16_net(t: torch.Tensor) -> torch.Tensor:  # bfloat16 inside, float32 out
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return model.net(t).float()

        net = bf16_net if network_precision(model) == "bfloat16" else model.net

        def class_probs(a: torch.Tensor) -> torch.Tensor:
            logits = sliding_window_inference(a, roi, cfg.sw_batch_size, net,
                                              overlap=cfg.sw_overlap, mode="gaussian")
            return torch.softmax(logits.float(), 1)[0]

        p = class_probs(inp)
        if cfg.tta_flip:  # mirror along R (dimension 2 of N, C, R, A, S), back again
            p = (p + class_probs(torch.flip(inp, dims=[2])).flip(1)) / 2.0
        probs[(slice(None),) + box] = p.cpu().numpy()
    brain = probs[[int(Tissue.WM), int(Tissue.GM), int(Tissue.VENTRICLE), int(Tissue.LESION)]].sum(0)
    keep = largest_component(brain >= 0.5)
    hull = brain_hull(keep, cfg.hull_closing_mm, model.voxel_mm) if cfg.hull_closing_mm > 0 else None
    judged = keep if hull is None else np.maximum(keep, hull.astype(np.float32))
    probs = probs * judged[None]
    probs[int(Tissue.NONBRAIN)] += 1.0 - judged  # everything off the brain (hull) is non-brain
    brain = brain * keep
    learned = probs[int(Tissue.LESION)]
    judged_learned = raise_logit(learned, cfg.learned_logit_offset)
    z = outlier_z(x[0].numpy(), probs, model.voxel_mm, cfg.outlier)
    if cfg.use_outlier:
        parenchyma = probs[[int(Tissue.WM), int(Tissue.GM), int(Tissue.LESION)]].sum(0)
        if hull is not None:
            parenchyma = parenchyma + hull * probs[int(Tissue.CSF)]
        q = outlier_probability(z, parenchyma, cfg)
        if cfg.outlier_rim_vox > 0:
            from scipy import ndimage

            depth = ndimage.distance_transform_edt(judged >= 0.5)  # voxels to the region's outside
            judge = depth > cfg.outlier_rim_vox
            if cfg.outlier_rim_opening_vox > 0:
                judge |= thick_regions(q >= 0.5, cfg.outlier_rim_opening_vox)
            q = q * judge
        lesion = 1.0 - (1.0 - judged_learned) * (1.0 - q)
    else:
        lesion = judged_learned
    edge_cm2 = box_edge_area_cm2(keep, box, model.voxel_mm)
    maps = [brain, lesion] + ([learned, z] if diagnostics else [])
    if diagnostics and cfg.asymmetry_sigma_mm > 0:
        from screener.model.symmetry import estimate_plane, misplaced_grey, tissue_asymmetry

        plane = estimate_plane(x[0], model.voxel_mm)
        maps.append(tissue_asymmetry(x[0], probs, model.voxel_mm, cfg.asymmetry_sigma_mm, plane))
        maps.append(misplaced_grey(x[0], probs, model.voxel_mm, plane=plane).astype(np.float32))
    if hull is not None:
        maps.append(hull_region(brain, judged, lesion, cfg.hull_opening_vox))
    back = resample(np.stack(maps).astype(np.float32), grid_aff, volume.affine, data.shape)
    pred = Prediction(brain_prob=np.clip(back[0], 0, 1), lesion_prob=np.clip(back[1], 0, 1),
                      brain_at_box_edge_cm2=edge_cm2)
    if diagnostics:
        tissue = probs.argmax(0).astype(np.float32)
        pred.learned_prob = np.clip(back[2], 0, 1)
        pred.outlier_z = back[3]
        if cfg.asymmetry_sigma_mm > 0:
            pred.asymmetry = back[4]
            pred.misplaced_grey = back[5] >= 0.5
        pred.tissue = resample(tissue[None], grid_aff, volume.affine, data.shape,
                               mode="nearest")[0].astype(np.uint8)
    if hull is not None:
        pred.assess_prob = np.clip(back[-1], 0, 1)
    pred.timing_s = {"preprocess": t1 - t0, "infer": time.perf_counter() - t1}
    return pred
