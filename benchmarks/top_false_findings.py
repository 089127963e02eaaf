"""Where the most lesion-like false finding of each lesion-free head sits (development look).

On the lesion-free heads among the first N calibration-space heads of a seed (held-out label
maps; N = 240 gives 60 heads, 12 per contrast), the weights' top finding by score: its volume,
the learned channel's maximum in it, hyper/hypointense, the generator's true tissue under it and
its share within 4 mm of the judged region's edge, by image contrast and slice thickness. This
is the finding that flags a lesion-free study. About 1.5 minutes for N = 240.

    .venv/bin/python benchmarks/top_false_findings.py [--n 240] [--seed 7] [--weights DIR]
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
    args = ap.parse_args()

    from screener.infer import predict
    from screener.model import synth_eval
    from screener.model.anatomy import Tissue
    from screener.model.verifier import FEATURES, analyse_prediction
    from screener.types import SeriesInfo, SeriesVolume

    _, dc, model = synth_eval.load_for_measuring(args.weights)
    gen, run_seed = synth_eval._generator(model.metadata)
    rows = []
    for spec, sample in synth_eval.calibration_heads(gen, run_seed, args.n, args.seed):
        if spec.lesion:
            continue
        img = sample.image[0].numpy().astype(np.float32)
        pred = predict(SeriesVolume(img, sample.affine, SeriesInfo("s", "s")), model, diagnostics=True)
        a, x = analyse_prediction(pred, img, sample.affine, "s", dc, None, features=True)
        if not a.findings:
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
