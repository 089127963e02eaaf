"""Does a regional outlier statistic see the lesions the fused map misses? (development look)

The fused map's outlier term judges voxels: q = sigmoid(2 (|z| - 4)) on a z-map smoothed by
about one voxel, in units of the tissue's voxel spread. A lesion of 10 mm or more that shifts its
tissue by 1-2 SD never reaches |z| = 4 voxel by voxel, although its mean over ~65 voxels of the
2 mm grid is far outside what noise gives. This script smooths the z-map over the brain at a
lesion's scale (normalised convolution inside the model's brain mask, Gaussian sigma S mm),
divides by the head's own robust spread of that smoothed map (median, 1.4826 MAD over the brain)
and asks, per head, for components of |t| > T holding at least 0.5 ml. It prints, for lesion
heads (the lesion measuring >= 10 mm) and lesion-free heads of a calibration-space seed (use a
development seed, never a judging one): the study statistic (largest peak |t| of such
components; for lesion heads, the components touching the lesion), its AUROC, and at the
lesion-free heads' 90th percentile how many lesions it finds, how many of those the fused map
misses and how many the two find together. No threshold is fitted; nothing in the screen uses it.

    .venv/bin/python benchmarks/regional_z.py --n 80 --seed 7 --sigma 3 5   # about 3 minutes
"""

from __future__ import annotations

import argparse

import numpy as np


def regional_t(z: np.ndarray, brain: np.ndarray, sigma_vox: float) -> np.ndarray:
    """z smoothed inside `brain` (normalised convolution), centred and scaled by its robust
    spread over the brain; 0 outside."""
    from scipy import ndimage

    from screener.metrics import mad_sd

    m = brain.astype(np.float32)
    num = ndimage.gaussian_filter(np.where(brain, z, 0.0).astype(np.float32), sigma_vox)
    den = ndimage.gaussian_filter(m, sigma_vox)
    zs = np.where(brain, num / np.maximum(den, 1e-3), 0.0)
    vals = zs[brain]
    sd = mad_sd(vals) if vals.size else 1.0
    return np.where(brain, (zs - float(np.median(vals))) / max(sd, 1e-6), 0.0).astype(np.float32)


def peak_stat(t: np.ndarray, brain: np.ndarray, level: float, min_vox: int,
              touching: np.ndarray | None = None) -> float:
    """Largest peak |t| over components of |t| > level (26-connected) with >= min_vox voxels;
    with `touching`, only components that overlap it. 0 when there are none."""
    from scipy import ndimage

    a = np.abs(t)
    lab, n = ndimage.label((a > level) & brain, structure=np.ones((3, 3, 3)))
    if n == 0:
        return 0.0
    idx = np.arange(1, n + 1)
    size = ndimage.sum(np.ones_like(a), lab, idx)
    peak = ndimage.maximum(a, lab, idx)
    ok = size >= min_vox
    if touching is not None:
        hit = np.zeros(n + 1, dtype=bool)
        hit[np.unique(lab[touching & (lab > 0)])] = True
        ok &= hit[1:]
    return float(peak[ok].max()) if ok.any() else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=80, help="calibration-space cases drawn")
    ap.add_argument("--seed", type=int, default=7, help="calibration seed (a development one)")
    ap.add_argument("--sigma", type=float, nargs="+", default=[3.0, 5.0], help="smoothing, mm")
    ap.add_argument("--level", type=float, default=2.0, help="|t| defining components")
    ap.add_argument("--weights", default=None, help="a candidate bundle instead of the shipped")
    args = ap.parse_args()

    from screener.infer import predict
    from screener.metrics import auroc
    from screener.model import synth_eval
    from screener.types import SeriesInfo, SeriesVolume

    _, _, model = synth_eval.load_for_measuring(args.weights)
    gen, run_seed = synth_eval._generator(model.metadata)
    rows = []
    for spec, s in synth_eval.calibration_heads(gen, run_seed, args.n, args.seed, 10.0):
        vol = SeriesVolume(data=s.image[0].numpy(), affine=s.affine, info=SeriesInfo("s", "s"))
        p = predict(vol, model, diagnostics=True)
        vox_mm = abs(float(np.linalg.det(s.affine[:3, :3]))) ** (1 / 3)
        min_vox = int(np.ceil(500.0 / vox_mm**3))  # 0.5 ml
        brain = p.brain_prob >= 0.5
        les = s.lesion_mask.numpy().astype(bool) if spec.lesion else None
        fused_hit = bool(les is not None and (p.lesion_prob[les] >= 0.5).any())
        stats = {}
        for sig in args.sigma:
            t = regional_t(p.outlier_z, brain, sig / vox_mm)
            stats[sig] = (peak_stat(t, brain, args.level, min_vox, les),
                          float(np.median(np.abs(t[les]))) if les is not None and les.any() else None)
        rows.append((spec.lesion, fused_hit, s.contrast, stats))
        print(f"{'lesion ' if spec.lesion else 'free   '} {s.contrast:5s} fused {'hit ' if fused_hit else 'miss' if spec.lesion else '    '} "
              + " ".join(f"S{sig:g}: peak {v[0]:5.1f}" + (f" (lesion median |t| {v[1]:4.1f})" if v[1] is not None else "")
                         for sig, v in stats.items()), flush=True)
    for sig in args.sigma:
        pos = [r[3][sig][0] for r in rows if r[0]]
        neg = [r[3][sig][0] for r in rows if not r[0]]
        thr = float(np.quantile(neg, 0.9)) if neg else float("inf")
        found = [r for r in rows if r[0] and r[3][sig][0] > thr]
        miss = [r for r in rows if r[0] and not r[1]]
        rescued = [r for r in miss if r[3][sig][0] > thr]
        either = sum(1 for r in rows if r[0] and (r[1] or r[3][sig][0] > thr))
        auc = auroc([True] * len(pos) + [False] * len(neg), pos + neg)
        print(f"sigma {sig:g} mm: AUROC {auc:.3f} (lesion heads {len(pos)}, lesion-free {len(neg)}); "
              f"at the lesion-free 90th percentile ({thr:.1f}): finds {len(found)}/{len(pos)}, "
              f"of the fused map's {len(miss)} misses {len(rescued)}; fused hits or this: {either}/{len(pos)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
