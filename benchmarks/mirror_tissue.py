"""Regional mirror comparisons of the network's tissue map: do missed lesions stand out?

Two forms of "compare with the other hemisphere", on the network's tissue probabilities rather
than the image (benchmarks/mirror_asymmetry.py showed the image itself too asymmetric):
- tissue make-up asymmetry (screener.model.symmetry.tissue_asymmetry, smoothed by --sigma mm):
  per head, its largest value in the brain away from the lesion against its largest value in
  the lesion;
- misplaced grey matter (symmetry.misplaced_grey): thick grey matter with none near its mirror
  position: volume on the lesion against volume elsewhere (largest region, total).
On calibration-space heads (default seed 7, a development seed no rule has judged on), lesion
heads kept only when their lesion measures >= 10 mm; weights from the config unless --weights.
Prints both for the lesion-free heads and for each lesion, marking whether the fused map hit it.

    .venv/bin/python benchmarks/mirror_tissue.py --n 60 --seed 7
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60, help="calibration heads (3 of 4 with a lesion)")
    ap.add_argument("--seed", type=int, default=7, help="calibration seed (as synth_eval calibrate)")
    ap.add_argument("--sigma", type=float, default=3.0, help="smoothing of the make-up (mm)")
    ap.add_argument("--weights", default=None, help="weights bundle directory")
    args = ap.parse_args()

    from scipy import ndimage

    from screener.decide import analyse_series
    from screener.infer import assessment_mask, predict
    from screener.model import synth_eval
    from screener.model.anatomy import Tissue
    from screener.types import SeriesInfo, SeriesVolume

    _, dc, base = synth_eval.load_for_measuring(args.weights)
    model = dataclasses.replace(base, config=dataclasses.replace(
        base.config, asymmetry_sigma_mm=args.sigma))
    gen, run_seed = synth_eval._generator(base.metadata)
    free: list[tuple[float, float, float]] = []  # asymmetry max, misplaced largest, total (ml)
    rows: list[tuple[bool, str, str, float, float, float, float]] = []
    for spec, smp in synth_eval.calibration_heads(gen, run_seed, args.n, args.seed, 10.0):
        img = smp.image[0].numpy()
        les = smp.target.numpy() == int(Tissue.LESION)
        pred = predict(SeriesVolume(data=img, affine=smp.affine, info=SeriesInfo("s", "s")),
                       model, diagnostics=True)
        brain = assessment_mask(pred, dc.brain_threshold)
        near = ndimage.binary_dilation(les, iterations=3)
        away = float(pred.asymmetry[brain & ~near].max())
        grey = pred.misplaced_grey & brain
        lab, n = ndimage.label(grey)
        vox_ml = abs(float(np.linalg.det(smp.affine[:3, :3]))) / 1000.0
        sizes = np.asarray(ndimage.sum(grey, lab, range(1, n + 1))) * vox_ml
        on = set(np.unique(lab[les & grey]).tolist()) - {0}
        off = [float(v) for k, v in enumerate(sizes, 1) if k not in on]
        if not spec.lesion:
            free.append((away, max(off, default=0.0), sum(off)))
            continue
        hit = bool(((analyse_series(pred.lesion_prob, brain, img, smp.affine, "s", dc).labels > 0)
                    & les).any())
        rows.append((hit, str(spec.contrast), str(spec.kind), float(pred.asymmetry[les].max()), away,
                     float(sum(sizes[k - 1] for k in on)), max(off, default=0.0)))
    f = np.asarray(free)
    print(f"weights {base.name} {base.version}; lesion-free heads n={len(free)}: tissue asymmetry "
          f"max median {np.median(f[:, 0]):.2f} (range {f[:, 0].min():.2f}-{f[:, 0].max():.2f}); "
          f"misplaced grey matter largest region median {np.median(f[:, 1]):.2f} ml, total median "
          f"{np.median(f[:, 2]):.1f} ml (range {f[:, 2].min():.1f}-{f[:, 2].max():.1f})")
    for title, keep in (("missed", False), ("hit", True)):
        group = [r for r in rows if r[0] == keep]
        print(f"{title} lesions measuring >= 10 mm: n={len(group)}")
        for _, contrast, kind, at, away, on_ml, off_ml in group:
            print(f"  {contrast:5s} {kind:13s} asymmetry max at the lesion {at:.2f}, elsewhere "
                  f"{away:.2f}; misplaced grey on the lesion {on_ml:.2f} ml, largest elsewhere "
                  f"{off_ml:.2f} ml")
        above = sum(r[3] > r[4] for r in group)
        print(f"  lesion's asymmetry above the rest of its head: {above}/{len(group)}; misplaced "
              f"grey on the lesion larger than any elsewhere: {sum(r[5] > r[6] for r in group)}/{len(group)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
