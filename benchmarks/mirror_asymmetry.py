"""How far lesions stand out in the mirror channel, against normal heads' own asymmetry.

On the first N calibration heads (the space benchmarks/inference_settings.py judges on), the
image minus its reflection about the fitted midsagittal plane (screener/model/symmetry.py),
absolute, smoothed by 1 voxel, is z-scored (median, MAD) over the true brain outside the lesion.
Prints the lesion-free heads' 99.9th percentile z and, per lesion kind, the lesions' 90th
percentile z and how many of them exceed the lesion-free heads' median 99.9th percentile.
No network is run; the generator's truth gives brain and lesion.

    .venv/bin/python benchmarks/mirror_asymmetry.py --n 60
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60, help="calibration heads (3 of 4 with a lesion)")
    ap.add_argument("--seed", type=int, default=1, help="calibration seed (as synth_eval calibrate)")
    args = ap.parse_args()

    from scipy import ndimage

    from screener.metrics import mad_sd
    from screener.model import synth_eval
    from screener.model.anatomy import Tissue
    from screener.model.symmetry import mirror

    _, _, base = synth_eval.load_for_measuring(None)
    gen, run_seed = synth_eval._generator(base.metadata)
    specs = synth_eval.cases(args.n, args.seed, "calib", run_seed, synth_eval.CLAIMED_MIN_DIAMETER_MM)
    rows: list[tuple[str, float]] = []
    free: list[float] = []
    for s, spec in specs:
        smp = gen.sample(s, spec)
        if spec.lesion and not smp.lesion_mask.any():
            continue
        x = smp.image[0]
        a = ndimage.gaussian_filter((x - mirror(x, gen.cfg.voxel_mm)).abs().numpy(), 1.0)
        t = smp.target.numpy()
        brain = (t != int(Tissue.NONBRAIN)) & (t != int(Tissue.CSF))
        les = t == int(Tissue.LESION)
        ref = a[brain & ~les]
        med = float(np.median(ref))
        mad = mad_sd(ref) + 1e-6
        z = (a - med) / mad
        if spec.lesion:
            rows.append((smp.lesions[0].kind, float(np.percentile(z[les], 90))))
        else:
            free.append(float(np.percentile(z[brain], 99.9)))
    thr = float(np.median(free))
    print(f"lesion-free heads (n={len(free)}): 99.9th percentile asymmetry z, median {thr:.2f} "
          f"(range {min(free):.2f}-{max(free):.2f})")
    for kind in sorted({k for k, _ in rows}):
        zs = [z for k, z in rows if k == kind]
        print(f"  {kind:14s} n={len(zs):2d}: lesion 90th-percentile z median {np.median(zs):.2f}; "
              f"above the lesion-free median 99.9th percentile {sum(z > thr for z in zs)}/{len(zs)}")
    print(f"  all lesions: {sum(z > thr for _, z in rows)}/{len(rows)} above")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
