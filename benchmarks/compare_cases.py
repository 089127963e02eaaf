"""Two weights judged on the same heads, head by head: `inference_settings.py --cases-csv` of each.

Reads the per-head rows two runs of `benchmarks/inference_settings.py --cases-csv` wrote for the same
--n/--seed/--measured-min (refused if the heads differ) and prints, for the fused map and the
learned channel alone:
- lesions hit by each, by kind, and the exact McNemar test on the heads hit by one and not the other;
- hit-gated AUROC and sensitivity at 90 % specificity of the 0.5 ml study scores, each weights'
  own threshold at its lesion-free heads' 0.9 quantile, with paired bootstrap 95 % intervals of
  the differences (heads resampled within lesion and lesion-free heads, the same resample for both).

    .venv/bin/python benchmarks/compare_cases.py /tmp/ship.csv /tmp/cand.csv [--boot 2000]
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter

import numpy as np

from finding_verifier import _figures  # benchmarks/ is the script's own directory

KEYS = ("head", "lesion", "kind", "contrast")


def _read(path: str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reference", help="cases CSV of the reference weights (e.g. the shipped ones)")
    ap.add_argument("candidate", help="cases CSV of the candidate, same heads")
    ap.add_argument("--boot", type=int, default=2000, help="bootstrap resamples")
    args = ap.parse_args()

    from scipy.stats import binomtest

    ref, cand = _read(args.reference), _read(args.candidate)
    if len(ref) != len(cand) or any(tuple(a[k] for k in KEYS) != tuple(b[k] for k in KEYS)
                                    for a, b in zip(ref, cand)):
        raise SystemExit("compare_cases: the two files do not hold the same heads")
    lesion = np.array([r["lesion"] == "1" for r in ref])
    kinds = [r["kind"] for r in ref]
    print(f"{len(ref)} heads: {lesion.sum()} with a lesion, {(~lesion).sum()} lesion-free")
    rng = np.random.default_rng(0)
    pos_i, neg_i = np.flatnonzero(lesion), np.flatnonzero(~lesion)
    resamples = [np.concatenate([rng.choice(pos_i, len(pos_i)), rng.choice(neg_i, len(neg_i))])
                 for _ in range(args.boot)]
    for name in ("fused", "learned"):
        hit_r = np.array([r[f"{name}_hit"] == "1" for r in ref]) & lesion
        hit_c = np.array([r[f"{name}_hit"] == "1" for r in cand]) & lesion
        only_r, only_c = int((hit_r & ~hit_c).sum()), int((hit_c & ~hit_r).sum())
        p = binomtest(only_c, only_r + only_c).pvalue if only_r + only_c else 1.0
        print(f"\n{name}: lesions hit {hit_r.sum()}/{lesion.sum()} (reference) against "
              f"{hit_c.sum()}/{lesion.sum()} (candidate); hit by the reference only {only_r}, "
              f"by the candidate only {only_c}, exact McNemar p = {p:.3f}")
        by_r = Counter(k for k, h in zip(kinds, hit_r) if h)
        by_c = Counter(k for k, h in zip(kinds, hit_c) if h)
        n_kind = Counter(k for k, les in zip(kinds, lesion) if les)
        print("  by kind: " + ", ".join(f"{k} {by_r[k]} -> {by_c[k]}/{n}" for k, n in sorted(n_kind.items())))
        s_r = np.array([float(r[f"{name}_score_0.5ml"]) for r in ref])
        s_c = np.array([float(r[f"{name}_score_0.5ml"]) for r in cand])
        (a_r, t_r), (a_c, t_c) = _figures(s_r, lesion), _figures(s_c, lesion)
        d = np.array([np.subtract(_figures(s_c[i], lesion[i]), _figures(s_r[i], lesion[i]))
                      for i in resamples])
        lo, hi = np.quantile(d, [0.025, 0.975], axis=0)
        print(f"  hit-gated AUROC {a_r:.3f} -> {a_c:.3f} ({a_c - a_r:+.3f}, 95 % CI {lo[0]:+.3f} to "
              f"{hi[0]:+.3f}); sensitivity at 90 % specificity {t_r:.2f} -> {t_c:.2f} "
              f"({t_c - t_r:+.2f}, 95 % CI {lo[1]:+.2f} to {hi[1]:+.2f}); {args.boot} paired resamples")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
