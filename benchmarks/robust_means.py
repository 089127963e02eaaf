"""Robust local means in the outlier term (model.outlier.exclude_beyond_sd) on synthetic heads.

A development diagnostic (no threshold is fitted to it). For each K given (0 = off), runs the
shipped weights with that setting over held-out heads: 8 FLAIR oedemas at 30 mm and 8 at 60-80 mm
(grey matter at white matter x 1.0-1.2, as `benchmarks/large_oedema.py` draws them), printing the
share of oedema voxels the fused map covers (p >= 0.5) and its Dice; then 8 lesion-free heads per
contrast (FLAIR, T1, T2), printing the median false-finding volume (fused p >= 0.5, the brain's
voxels only as predict() judges them).

    .venv/bin/python benchmarks/robust_means.py 0 3 4                  # about 3 minutes
    .venv/bin/python benchmarks/robust_means.py 0 3 --seed-z 0 4 6     # seeded exclusion too
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("k", type=float, nargs="*", default=[0.0, 3.0],
                    help="model.outlier.exclude_beyond_sd values to compare (0 = off)")
    ap.add_argument("--seed-z", type=float, nargs="*", default=[0.0],
                    help="model.outlier.exclude_seed_z values, each run with every K > 0 (0 = every "
                         "far voxel is left out; Z = only far regions holding a plain |z| > Z)")
    ap.add_argument("--n", type=int, default=8, help="heads per set")
    ap.add_argument("--weights", default=None, help="a candidate bundle instead of the shipped")
    args = ap.parse_args()

    from screener.infer import predict
    from screener.model.synth import SampleSpec
    from screener.model.synth_eval import load_for_measuring, oedema_heads, realistic_flair_generator
    from screener.types import SeriesInfo, SeriesVolume

    base = load_for_measuring(args.weights)[2]
    settings = [(k, z) for k in args.k for z in (args.seed_z if k > 0 else [0.0])]
    models = [(f"K={k:g}" + (f" seeded at z {z:g}" if z else ""),
               dataclasses.replace(base, config=dataclasses.replace(
                   base.config, outlier=dataclasses.replace(base.config.outlier, exclude_beyond_sd=k,
                                                            exclude_seed_z=z))))
              for k, z in settings]
    gen = realistic_flair_generator()

    def found(sample: object, model: object) -> np.ndarray:
        vol = SeriesVolume(data=sample.image[0].numpy(), affine=sample.affine,
                           info=SeriesInfo("synthetic", "synthetic"))
        return predict(vol, model).lesion_prob >= 0.5

    for diameter in (30.0, None):
        samples = oedema_heads(gen, args.n, diameter)
        size = f"{diameter:g} mm" if diameter else "60-80 mm"
        for name, model in models:
            cover, dice = [], []
            for s in samples:
                les, p = s.lesion_mask.numpy(), found(s, model)
                cover.append(float(p[les].mean()))
                dice.append(2.0 * float((p & les).sum()) / float(p.sum() + les.sum()))
            print(f"oedema {size}, {name}: n={len(cover)}, covered {np.mean(cover):.2f}, "
                  f"Dice {np.mean(dice):.3f}", flush=True)
    voxel_ml = gen.cfg.voxel_mm ** 3 / 1000.0
    for contrast in ("FLAIR", "T1", "T2"):
        samples = [gen.sample(900 + seed, SampleSpec(lesion=False, contrast=contrast,
                                                     slice_thickness_mm=2.0))
                   for seed in range(args.n)]
        for name, model in models:
            ml = [float(found(s, model).sum()) * voxel_ml for s in samples]
            print(f"lesion-free {contrast}, {name}: n={len(ml)}, false volume median "
                  f"{np.median(ml):.1f} ml (max {max(ml):.1f})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
