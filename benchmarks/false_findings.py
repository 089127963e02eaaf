"""Where the fused map's false findings on lesion-free heads lie.

A development diagnostic (no threshold is fitted to it). Runs the shipped weights (or a
candidate) over the lesion-free heads among the first N of a calibration-space seed (the same
draws as `benchmarks/inference_settings.py --seed S`; use a development seed, not a judging one)
and prints, per head: its contrast, slice thickness and whether it is skull-stripped; the false
volume (fused p >= 0.5) and its connected components (6-connectivity); the share the learned
channel alone calls abnormal; the share within 2 and 6 mm of the true brain's surface (distance
transform of the generator's white matter, grey matter and ventricles); the share brighter than
expected (outlier z > 0); and the label map's true tissue under it.

    .venv/bin/python benchmarks/false_findings.py --n 80 --seed 7    # about 1.5 minutes
    .venv/bin/python benchmarks/false_findings.py --n 80 --seed 7 --rim 2
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=80, help="calibration-space cases drawn (1 in 4 lesion-free)")
    ap.add_argument("--seed", type=int, default=7, help="calibration seed (a development one)")
    ap.add_argument("--rim", type=int, default=None, help="model.outlier_rim_vox (default: the config's)")
    ap.add_argument("--weights", default=None, help="a candidate bundle instead of the shipped")
    args = ap.parse_args()

    from scipy import ndimage

    from screener.infer import predict
    from screener.model import synth_eval
    from screener.model.anatomy import Tissue
    from screener.types import SeriesInfo, SeriesVolume

    _, _, model = synth_eval.load_for_measuring(args.weights)
    if args.rim is not None:
        model = dataclasses.replace(model, config=dataclasses.replace(model.config,
                                                                      outlier_rim_vox=args.rim))
    gen, run_seed = synth_eval._generator(model.metadata)
    volumes = []
    for spec, s in synth_eval.calibration_heads(gen, run_seed, args.n, args.seed):
        if spec.lesion:
            continue
        vol = SeriesVolume(data=s.image[0].numpy(), affine=s.affine, info=SeriesInfo("s", "s"))
        p = predict(vol, model, diagnostics=True)
        fp = p.lesion_prob >= 0.5
        voxel_mm3 = abs(float(np.linalg.det(s.affine[:3, :3])))
        voxel_ml, voxel_mm = voxel_mm3 / 1000.0, voxel_mm3 ** (1 / 3)
        t = s.target.numpy()
        brain = np.isin(t, [int(Tissue.WM), int(Tissue.GM), int(Tissue.VENTRICLE)])
        depth = ndimage.distance_transform_edt(brain)[fp] * voxel_mm
        lab, k = ndimage.label(fp)
        largest = float(np.bincount(lab.ravel())[1:].max()) * voxel_ml if k else 0.0
        share = np.bincount(t[fp].ravel(), minlength=len(Tissue)) / max(int(fp.sum()), 1)
        z = p.outlier_z[fp]
        volumes.append(float(fp.sum()) * voxel_ml)

        def frac(a: np.ndarray) -> float:
            return float(a.mean()) if a.size else 0.0

        print(f"{s.contrast:6s} {s.slice_thickness_mm:.1f} mm{' stripped' if s.skull_stripped else '         '}: "
              f"{volumes[-1]:5.1f} ml in {k:4d} components (largest {largest:4.1f} ml); "
              f"learned channel {frac(p.learned_prob[fp] >= 0.5):.2f}; within 2 mm of the brain's "
              f"surface {frac(depth <= 2.0):.2f}, 6 mm {frac(depth <= 6.0):.2f}; brighter {frac(z > 0):.2f}; "
              "true " + " ".join(f"{tt.name.lower()} {share[int(tt)]:.2f}" for tt in Tissue
                                 if tt != Tissue.LESION), flush=True)
    print(f"lesion-free heads: n={len(volumes)}, false volume median {np.median(volumes):.1f} ml")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
