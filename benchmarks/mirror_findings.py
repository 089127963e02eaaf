"""Are false findings mirror-symmetric and true ones not? A finding-level mirror check, measured.

On held-out synthetic calibration heads (the space `inference_settings.py` uses), runs the
weights once per head, fits the head's midsagittal plane (`screener.model.symmetry`) and, for
every finding of the fused map and of the learned channel alone, measures:
- support: the mean of the map reflected about the plane over the finding's voxels (does the
  network see the same thing at the mirror place?);
- asym_z: |median image in the finding - median reflected image there| / robust SD of the brain
  (does the image differ from the other side there?).
Prints their quartiles for findings that hit a lesion, false findings on lesion heads and
findings on lesion-free heads, then hits, lesion-free false volume and the hit-gated study AUROC
at the 0.5 ml score scale with and without the check "drop a finding whose support >= S and
asym_z < Z" (both: the network sees it on both sides and the image does not differ).

    .venv/bin/python benchmarks/mirror_findings.py --n 60 [--weights DIR] [--rule 0.5 1.0]
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--rule", type=float, nargs=2, default=[0.5, 1.0], metavar=("S", "Z"),
                    help="drop findings with support >= S and asym_z < Z")
    ap.add_argument("--scale", type=float, default=0.5, help="study-score volume scale (ml)")
    args = ap.parse_args()

    import torch

    from screener.decide import analyse_series, finding_score
    from screener.infer import assessment_mask, predict
    from screener.metrics import auroc, mad_sd
    from screener.model import synth_eval
    from screener.model.anatomy import Tissue
    from screener.model.symmetry import estimate_plane, mirror
    from screener.types import SeriesInfo, SeriesVolume

    _, dc, model = synth_eval.load_for_measuring(args.weights)
    gen, run_seed = synth_eval._generator(model.metadata)
    specs = synth_eval.cases(args.n, args.seed, "calib", run_seed, synth_eval.CLAIMED_MIN_DIAMETER_MM)
    s_max, z_min = args.rule
    # per map: list of (lesion study, [(hit, support, asym_z, prob, volume_ml)])
    rows: dict[str, list[tuple[bool, list[tuple[bool, float, float, float, float]]]]] = {
        "fused": [], "learned": []}
    for s, spec in specs:
        sample = gen.sample(s, spec)
        if spec.lesion and not sample.lesion_mask.any():
            continue
        img = sample.image[0].numpy()
        les = sample.target.numpy() == int(Tissue.LESION)
        vox_mm = gen.cfg.voxel_mm
        pred = predict(SeriesVolume(data=img, affine=sample.affine,
                                    info=SeriesInfo("synthetic", "synthetic")), model,
                       diagnostics=True)
        brain = assessment_mask(pred, dc.brain_threshold)
        plane = estimate_plane(torch.from_numpy(img).float(), vox_mm)
        img_m = mirror(torch.from_numpy(img).float(), vox_mm, plane).numpy()
        b = img[brain]
        rsd = mad_sd(b) or 1e-6
        for name, prob in (("fused", pred.lesion_prob), ("learned", pred.learned_prob)):
            prob_m = mirror(torch.from_numpy(np.asarray(prob)).float(), vox_mm, plane).numpy()
            a = analyse_series(prob, brain, img, sample.affine, "s", dc)
            out = []
            for f in a.findings:
                comp = a.labels == f.label
                support = float(prob_m[comp].mean())
                asym = abs(float(np.median(img[comp])) - float(np.median(img_m[comp]))) / rsd
                out.append((bool((comp & les).any()), support, asym, f.probability, f.volume_ml))
            rows[name].append((bool(spec.lesion), out))
    n_les = sum(r[0] for r in rows["fused"])
    print(f"{len(rows['fused'])} calibration heads ({n_les} with a lesion drawn at >= 10 mm); "
          f"check: drop support >= {s_max:g} and asym_z < {z_min:g}")
    for name, res in rows.items():
        print(f"\n{name}")
        groups = {"hit findings": [f for les, fs in res if les for f in fs if f[0]],
                  "false findings, lesion heads": [f for les, fs in res if les for f in fs if not f[0]],
                  "findings, lesion-free heads": [f for les, fs in res if not les for f in fs]}
        for g, fs in groups.items():
            if not fs:
                continue
            sup = np.quantile([f[1] for f in fs], [0.25, 0.5, 0.75])
            asy = np.quantile([f[2] for f in fs], [0.25, 0.5, 0.75])
            dropped = [f for f in fs if f[1] >= s_max and f[2] < z_min]
            print(f"  {g} (n={len(fs)}, {sum(f[4] for f in fs):.1f} ml): support quartiles "
                  + " ".join(f"{v:.2f}" for v in sup) + "; asym_z quartiles "
                  + " ".join(f"{v:.2f}" for v in asy)
                  + f"; the check drops {len(dropped)} ({sum(f[4] for f in dropped):.1f} ml)")
        for label, keep in (("without the check", lambda f: True),
                            ("with the check", lambda f: not (f[1] >= s_max and f[2] < z_min))):
            hits = sum(any(f[0] for f in fs if keep(f)) for les, fs in res if les)
            false_ml = [sum(f[4] for f in fs if keep(f)) for les, fs in res if not les]
            score = lambda fs: max((finding_score(f[3], f[4], args.scale) for f in fs if keep(f)),  # noqa: E731
                                   default=0.0)
            pos = [score(fs) if any(f[0] for f in fs if keep(f)) else 0.0 for les, fs in res if les]
            neg = [score(fs) for les, fs in res if not les]
            auc = auroc([True] * len(pos) + [False] * len(neg), pos + neg)
            print(f"  {label}: lesions hit {hits}/{n_les}, lesion-free false volume median "
                  f"{np.median(false_ml):.1f} ml (n={len(false_ml)}), hit-gated AUROC@{args.scale:g} ml "
                  f"{auc:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
