"""How much of a synthetic FLAIR oedema the model covers, by oedema size.

A development diagnostic (no threshold is fitted to it). Draws lesion heads from the held-out
label maps, each with one oedema on FLAIR at 2 mm, with grey matter at white matter x 1.0-1.2 as
on real FLAIR (`synth.flair_gm_ratio`), once at --diameter mm and once at 60-80 mm
(`synth.p_large_lesion` 1), and prints for each set of weights: the share of oedema voxels the
fused map covers (p >= 0.5), the median learned-channel probability over the oedema, and the
tissue classes the network calls its voxels.

    .venv/bin/python benchmarks/large_oedema.py --n 8                       # shipped weights, ~1 min
    .venv/bin/python benchmarks/large_oedema.py --n 8 --weights /tmp/cand8  # plus a candidate
    .venv/bin/python benchmarks/large_oedema.py --n 8 --whole-head          # one window per head
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8, help="heads per oedema size")
    ap.add_argument("--diameter", type=float, default=30.0, help="the smaller oedema's size (mm)")
    ap.add_argument("--weights", nargs="*", default=[], help="candidate bundles besides the shipped")
    ap.add_argument("--whole-head", action="store_true",
                    help="also the shipped weights with one window over the whole head")
    args = ap.parse_args()

    from screener.infer import load_model, predict
    from screener.model.anatomy import N_CLASSES, Tissue
    from screener.model.synth_eval import load_for_measuring, oedema_heads, realistic_flair_generator
    from screener.types import SeriesInfo, SeriesVolume

    shipped = load_for_measuring()[2]
    models = [(f"shipped {shipped.version}", shipped)]
    models += [(w, load_for_measuring(w)[2]) for w in args.weights]
    if args.whole_head:
        models.append(("shipped, whole-head window",
                       load_model(dataclasses.replace(shipped.config, roi_size=None), "cpu")))
    gen = realistic_flair_generator()
    for diameter in (args.diameter, None):
        samples = oedema_heads(gen, args.n, diameter)
        size = f"{diameter:g} mm" if diameter else "60-80 mm"
        for name, model in models:
            shares, learned, covered = [], [], []
            for s in samples:
                les = s.lesion_mask.numpy()
                p = predict(SeriesVolume(data=s.image[0].numpy(), affine=s.affine,
                                         info=SeriesInfo("synthetic", "synthetic")),
                            model, diagnostics=True)
                shares.append(np.bincount(p.tissue[les].ravel(), minlength=N_CLASSES) / les.sum())
                learned.append(float(np.median(p.learned_prob[les])))
                covered.append(float((p.lesion_prob[les] >= 0.5).mean()))
            sh = np.mean(shares, 0)
            print(f"oedema {size}, {name}: n={len(covered)}, fused map covers {np.mean(covered):.2f} "
                  f"of it, learned median {np.median(learned):.3f}; its voxels called "
                  + " ".join(f"{t.name.lower()} {sh[int(t)]:.2f}" for t in Tissue), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
