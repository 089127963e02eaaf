"""The finding verifier against the fused map's own score, on the same held-out heads.

Screens N held-out calibration-space heads (label maps never trained on; lesion heads kept when
their lesion measures >= --measured-min mm) once, and scores every finding twice: with the fused
map's score p * (1 - exp(-V / 0.5 ml)) (what 0.6.1 ships) and with the verifier's probability
(screener/model/verifier.py). Hits do not change (the verifier rescores, it removes nothing).
Each head's study score is read two ways:
- localised (the rule's): a lesion head scores its best finding *on the lesion* (0 when no
  finding touches it), a lesion-free head its best finding;
- hit-gated (as benchmarks/inference_settings.py): a lesion head whose lesion is hit scores its
  best finding anywhere, else 0.
Printed for each scoring: AUROC and sensitivity at 90 % specificity, with paired bootstrap 95 %
intervals of the verifier's differences (heads resampled within lesion and lesion-free heads).

    .venv/bin/python benchmarks/finding_verifier.py --n 320 --seed 19 --weights /tmp/cand
"""

from __future__ import annotations

import argparse
import csv

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=160, help="calibration-space heads drawn (every 4th lesion-free)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--measured-min", type=float, default=10.0, metavar="MM")
    ap.add_argument("--weights", default=None, help="weights bundle (default: the config's)")
    ap.add_argument("--verifier", default=None, metavar="FILE",
                    help="verifier.json to judge (default: the bundle's)")
    ap.add_argument("--boot", type=int, default=2000, help="bootstrap resamples")
    ap.add_argument("--cases-csv", default=None, metavar="PATH", help="one row per head")
    args = ap.parse_args()

    import dataclasses

    from tqdm import tqdm

    from screener.model import synth_eval
    from screener.model.verifier import VERIFIER_FILE, Verifier, head_findings

    _, dc, model = synth_eval.load_for_measuring(args.weights)
    path = args.verifier or (model.weights_dir / VERIFIER_FILE)
    verifier = Verifier.load(path)
    model = dataclasses.replace(model, verifier=None)
    gen, run_seed = synth_eval._generator(model.metadata)
    heads = list(synth_eval.calibration_heads(gen, run_seed, args.n, args.seed, args.measured_min))
    rows = []
    for spec, sample in tqdm(heads, desc="heads", unit="head"):
        h = head_findings(sample, model, dc)
        ver = verifier.probability(h.features) if len(h.features) else np.zeros(0)
        rows.append((spec, h, h.scores, ver))
    lesion = np.array([h.lesion for _, h, _, _ in rows])
    hit = np.array([bool(h.touches.any()) for _, h, _, _ in rows])
    print(f"weights {model.name} {model.version}, verifier {path}: {len(rows)} heads (seed "
          f"{args.seed}), {lesion.sum()} with a lesion measuring >= {args.measured_min:g} mm "
          f"({hit[lesion].sum()} hit), {(~lesion).sum()} lesion-free")
    scores = {}
    for name, col in (("fused", 2), ("verifier", 3)):
        loc = np.array([_localised(r[1], r[col]) for r in rows])
        gated = np.array([(r[col].max() if len(r[col]) else 0.0) if (hit[i] or not lesion[i]) else 0.0
                          for i, r in enumerate(rows)])
        scores[name] = {"localised": loc, "hit-gated": gated}
    rng = np.random.default_rng(0)
    pos_i, neg_i = np.flatnonzero(lesion), np.flatnonzero(~lesion)
    for reading in ("localised", "hit-gated"):
        print(f"\n{reading} study scores:")
        figs = {n: _figures(scores[n][reading], lesion) for n in scores}
        for n, (auc, sens) in figs.items():
            print(f"  {n:8s} AUROC {auc:.3f}, sensitivity at 90 % specificity {sens:.2f}")
        diffs = []
        for _ in range(args.boot):
            idx = np.concatenate([rng.choice(pos_i, len(pos_i)), rng.choice(neg_i, len(neg_i))])
            a = _figures(scores["verifier"][reading][idx], lesion[idx])
            b = _figures(scores["fused"][reading][idx], lesion[idx])
            diffs.append((a[0] - b[0], a[1] - b[1]))
        d = np.array(diffs)
        lo, hi = np.quantile(d, [0.025, 0.975], axis=0)
        print(f"  verifier - fused: AUROC {figs['verifier'][0] - figs['fused'][0]:+.3f} "
              f"(95 % CI {lo[0]:+.3f} to {hi[0]:+.3f}), sensitivity at 90 % specificity "
              f"{figs['verifier'][1] - figs['fused'][1]:+.2f} (95 % CI {lo[1]:+.2f} to {hi[1]:+.2f}); "
              f"{args.boot} paired bootstrap resamples")
    if args.cases_csv:
        with open(args.cases_csv, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["head", "lesion", "kind", "contrast", "hit", "findings",
                        "fused_localised", "verifier_localised"])
            for i, (spec, h, _, _) in enumerate(rows):
                w.writerow([i, int(h.lesion), str(spec.kind) if h.lesion else "", str(spec.contrast),
                            int(hit[i]), len(h.touches), f"{scores['fused']['localised'][i]:.6f}",
                            f"{scores['verifier']['localised'][i]:.6f}"])
    return 0


def _localised(h, s: np.ndarray) -> float:
    """A lesion head's best finding on the lesion (0 if none); a lesion-free head's best finding."""
    if h.lesion:
        return float(s[h.touches].max()) if h.touches.any() else 0.0
    return float(s.max()) if len(s) else 0.0


def _figures(score: np.ndarray, lesion: np.ndarray) -> tuple[float, float]:
    """(AUROC, sensitivity at 90 % specificity: share of lesion heads above the lesion-free
    heads' 0.9 quantile)."""
    from screener.metrics import auroc

    pos, neg = score[lesion], score[~lesion]
    thr = float(np.quantile(neg, 0.9))
    return auroc(lesion.tolist(), score.tolist()), float(np.mean(pos > thr))


if __name__ == "__main__":
    raise SystemExit(main())
