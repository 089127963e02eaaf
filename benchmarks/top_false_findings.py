"""Where the most lesion-like false finding of each lesion-free head sits (development look).

On the lesion-free heads among the first N calibration-space heads of a seed (held-out label
maps; N = 240 gives 60 heads, 12 per contrast), the weights' top finding by score: its volume,
the learned channel's maximum in it, hyper/hypointense, the generator's true tissue under it and
its share within 4 mm of the judged region's edge, by image contrast and slice thickness. This
is the finding that flags a lesion-free study. About 1.5 minutes for N = 240.
With --fluid, the lesion heads (lesions measuring >= 10 mm) are screened too, and for the top
false finding and each lesion's finding it prints how close they lie to what the network calls
fluid (extra-cerebral CSF or ventricle): the share of their voxels within 3 mm of it, its median
distance, and how well each separates the two (AUROC).

    .venv/bin/python benchmarks/top_false_findings.py [--n 240] [--seed 7] [--weights DIR] [--fluid]
"""

from __future__ import annotations

import argparse
import collections

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=240, help="calibration-space heads drawn (every 4th lesion-free)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--fluid", action="store_true",
                    help="also screen the lesion heads and compare distances to network fluid")
    args = ap.parse_args()

    from screener.infer import predict
    from screener.model import synth_eval
    from screener.model.anatomy import Tissue
    from screener.model.verifier import FEATURES, analyse_prediction
    from screener.types import SeriesInfo, SeriesVolume

    _, dc, model = synth_eval.load_for_measuring(args.weights)
    gen, run_seed = synth_eval._generator(model.metadata)
    rows = []
    fluid_near: dict[bool, list[tuple[float, float]]] = {True: [], False: []}  # lesion finding?
    heads = synth_eval.calibration_heads(gen, run_seed, args.n, args.seed,
                                         10.0 if args.fluid else None)
    for spec, sample in heads:
        if spec.lesion and not args.fluid:
            continue
        img = sample.image[0].numpy().astype(np.float32)
        pred = predict(SeriesVolume(img, sample.affine, SeriesInfo("s", "s")), model, diagnostics=True)
        a, x = analyse_prediction(pred, img, sample.affine, "s", dc, None, features=True)
        if not a.findings:
            continue
        if args.fluid:
            on = _near_fluid(a, pred, sample, spec.lesion)
            if on is not None:
                fluid_near[spec.lesion].append(on)
            if spec.lesion:
                continue
        top = a.findings[0]  # highest score
        inside = a.labels == top.label
        share = np.bincount(sample.target.numpy()[inside].ravel(), minlength=len(Tissue)) / inside.sum()
        row = x[sorted(f.label for f in a.findings).index(top.label)]
        rows.append({"contrast": str(spec.contrast), "thickness": spec.slice_thickness_mm,
                     "ml": top.volume_ml, "signal": top.signal, "truth": share,
                     "learned_max": row[FEATURES.index("learned_max")],
                     "edge": row[FEATURES.index("edge_share")], "findings": len(a.findings)})
    print(f"weights {model.name} {model.version}: {len(rows)} lesion-free heads with a finding "
          f"(seed {args.seed})")
    for c in sorted({r["contrast"] for r in rows}):
        sub = [r for r in rows if r["contrast"] == c]
        signal = collections.Counter(r["signal"] for r in sub)
        print(f"  {c:6s} n={len(sub)}: top false finding median {np.median([r['ml'] for r in sub]):.2f} ml, "
              f"learned max median {np.median([r['learned_max'] for r in sub]):.2f}, "
              + ", ".join(f"{k} {v}" for k, v in sorted(signal.items())))
    for t in sorted({r["thickness"] for r in rows}):
        sub = [r["ml"] for r in rows if r["thickness"] == t]
        print(f"  {t:g} mm slices n={len(sub)}: median {np.median(sub):.2f} ml")
    share = np.mean([r["truth"] for r in rows], axis=0)
    print("  true tissue under it (mean share): "
          + ", ".join(f"{t.name.lower()} {share[int(t)]:.2f}" for t in Tissue))
    print(f"  share within 4 mm of the judged edge: median {np.median([r['edge'] for r in rows]):.2f}; "
          f"findings per head: median {np.median([r['findings'] for r in rows]):.0f}")
    if args.fluid:
        from screener.metrics import auroc

        les, top = np.array(fluid_near[True]), np.array(fluid_near[False])
        labels = [True] * len(les) + [False] * len(top)
        print(f"  near network fluid (CSF or ventricle): lesion findings n={len(les)} share within "
              f"3 mm median {np.median(les[:, 0]):.2f}, distance median {np.median(les[:, 1]):.1f} mm; "
              f"top false findings n={len(top)} {np.median(top[:, 0]):.2f}, {np.median(top[:, 1]):.1f} mm; "
              f"AUROC (lesion vs top false) of the share {auroc(labels, list(-les[:, 0]) + list(-top[:, 0])):.3f}, "
              f"of the distance {auroc(labels, list(les[:, 1]) + list(top[:, 1])):.3f}")
    return 0


def _near_fluid(a, pred, sample, lesion: bool) -> tuple[float, float] | None:
    """(share of voxels within 3 mm of network fluid, median distance to it in mm) of the finding
    on the lesion (its highest-scored one; None when the lesion is missed) or, in a lesion-free
    head, of the top finding."""
    from scipy import ndimage

    from screener.model.anatomy import Tissue

    if lesion:
        truth = sample.lesion_mask.numpy().astype(bool)
        on = [f for f in a.findings if (truth & (a.labels == f.label)).any()]
        if not on:
            return None
        f = on[0]
    else:
        f = a.findings[0]
    fluid = np.isin(pred.tissue, (int(Tissue.CSF), int(Tissue.VENTRICLE)))
    dist = ndimage.distance_transform_edt(~fluid, sampling=np.linalg.norm(sample.affine[:3, :3], axis=0))
    d = dist[a.labels == f.label]
    return float(np.mean(d <= 3.0)), float(np.median(d))


if __name__ == "__main__":
    raise SystemExit(main())
