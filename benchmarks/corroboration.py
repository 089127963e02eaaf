"""Would corroboration across a study's series separate lesions from false findings? A probe.

Real brain protocols hold several structural series of one head (T1, T2, FLAIR at least); the
screen scores a study by its strongest finding over every used series (decide.decide_study), so
each further series adds its false findings. A lesion changes the tissue's signal in every
contrast, while the false findings of a lesion-free head sit on partial volume at tissue borders
(benchmarks/top_false_findings.py: mostly bright CSF partial volume on T2 and PD), which differs
by contrast. This probe draws each calibration-space head three times, as T1, T2 and FLAIR (same
seed and spec, so the same anatomy, pose, lesion plan and grid; only the appearance differs), runs
the weights on each and compares study scores, each lesion-hit-gated as in
benchmarks/inference_settings.py (a lesion head whose findings miss the lesion scores 0):
- one series alone;
- the strongest finding over the series (what `screen` does now with several series);
- corroborated: a finding counts only where another series has a finding within TOL mm of it,
  and scores min(its score, the strongest such partner's); the study takes the best pair (for
  three series: any two). A lesion head is hit when a corroborated finding touches its lesion.
Development only (no threshold is fitted, nothing is adopted from it): a decision rule using
corroboration would be fixed and judged on other heads.

    .venv/bin/python benchmarks/corroboration.py --n 160 --seed 31 [--tol-mm 4] [--weights DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time

import numpy as np

CONTRASTS = ("T1", "T2", "FLAIR")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=160, help="calibration-space heads drawn")
    ap.add_argument("--seed", type=int, default=31)
    ap.add_argument("--measured-min", type=float, default=10.0, metavar="MM",
                    help="keep lesion heads whose lesion measures >= MM (in every contrast)")
    ap.add_argument("--tol-mm", type=float, default=4.0,
                    help="how close another series' finding must come to corroborate (mm)")
    ap.add_argument("--scale", type=float, default=0.5, help="study score volume scale (ml)")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    from finding_verifier import _figures  # benchmarks/ is the script's own directory
    from screener.decide import analyse_series, finding_score
    from screener.infer import assessment_mask, predict
    from screener.model import synth_eval
    from screener.types import SeriesInfo, SeriesVolume

    _, dc, model = synth_eval.load_for_measuring(args.weights, threads=args.threads)
    gen, run_seed = synth_eval._generator(model.metadata)
    t0 = time.perf_counter()
    heads: list[tuple[bool, dict[str, tuple[bool, list, np.ndarray, np.ndarray]]]] = []
    for s, spec in synth_eval.cases(args.n, args.seed, "calib", run_seed,
                                    synth_eval.CLAIMED_MIN_DIAMETER_MM):
        per: dict[str, tuple[bool, list, np.ndarray, np.ndarray]] = {}
        keep = True
        for c in CONTRASTS:
            sample = gen.sample(s, dataclasses.replace(spec, contrast=c))
            les = sample.lesion_mask.numpy()
            if spec.lesion and (not les.any() or (synth_eval.measured_diameter_mm(
                    les, sample.affine) or 0.0) < args.measured_min):
                keep = False
                break
            img = sample.image[0].numpy()
            pred = predict(SeriesVolume(data=img, affine=sample.affine,
                                        info=SeriesInfo("synthetic", "synthetic")), model)
            brain = assessment_mask(pred, dc.brain_threshold)
            a = analyse_series(pred.lesion_prob, brain, img, sample.affine, c, dc)
            scores = {f.label: finding_score(f.probability, f.volume_ml, args.scale)
                      for f in a.findings}
            hit = bool(((a.labels > 0) & les).any())
            per[c] = (hit, scores, a.labels, les)
        if keep:
            heads.append((spec.lesion, per))
    tol_vox = args.tol_mm / model.voxel_mm
    n_les = sum(h[0] for h in heads)
    print(f"weights {model.name} {model.version}: {len(heads)} heads drawn as {', '.join(CONTRASTS)} "
          f"({n_les} with a lesion measuring >= {args.measured_min:g} mm, {len(heads) - n_les} "
          f"lesion-free; seed {args.seed}); {time.perf_counter() - t0:.0f} s; corroboration "
          f"within {args.tol_mm:g} mm")

    def report(name: str, rows: list[tuple[bool, bool, float]]) -> None:
        lesion = np.array([les for les, _, _ in rows])
        gated = np.array([sc if hit or not les else 0.0 for les, hit, sc in rows])
        auc, sens = _figures(gated, lesion)
        hits = sum(hit for les, hit, _ in rows if les)
        print(f"  {name:28s} hits {hits:3d}/{lesion.sum()}, lesion-free heads with any finding "
              f"{np.mean(gated[~lesion] > 0):.2f}, hit-gated AUROC {auc:.3f}, sensitivity at 90 % "
              f"specificity {sens:.2f}")

    for c in CONTRASTS:
        report(f"{c} alone", [(les, per[c][0], max(per[c][1].values(), default=0.0))
                              for les, per in heads])
    # each ordered pair once per head; a group of series takes the best of its pairs
    pairs = [{(a, b): _corroborated(per[a], per[b], tol_vox)
              for a, b in itertools.permutations(CONTRASTS, 2)} for _, per in heads]
    for group in [*itertools.combinations(CONTRASTS, 2), CONTRASTS]:
        rows_max, rows_cor = [], []
        for (les, per), pair in zip(heads, pairs):
            rows_max.append((les, any(per[c][0] for c in group),
                             max((max(per[c][1].values(), default=0.0) for c in group))))
            got = [pair[ab] for ab in itertools.permutations(group, 2)]
            rows_cor.append((les, any(h for _, h in got), max(sc for sc, _ in got)))
        report(" + ".join(group) + ", max", rows_max)
        report(" + ".join(group) + ", corroborated", rows_cor)
    # Control: is a lesion-free head's false finding corroborated because the other series has one
    # at the same place in the same head, or because findings are dense enough that something is
    # always near? The same measure against the next lesion-free head's series (another anatomy,
    # on the same centred grid).
    free = [per for les, per in heads if not les]
    print(f"  lesion-free heads (n={len(free)}): share of a series' finding voxels with a finding "
          f"of another series within {args.tol_mm:g} mm, median [quartiles]")
    for a, b in itertools.permutations(("T2", "FLAIR"), 2):
        same = [_near_share(p[a][2], p[b][2], tol_vox) for p in free]
        other = [_near_share(p[a][2], q[b][2], tol_vox) for p, q in zip(free, free[1:] + free[:1])]
        print(f"    {a} against {b}: same head {_quartiles(same)}; another head {_quartiles(other)}")
    return 0


def _near_share(labels_a: np.ndarray, labels_b: np.ndarray, tol_vox: float) -> float:
    from scipy import ndimage

    found = labels_a > 0
    if not found.any() or not (labels_b > 0).any():
        return 0.0
    dist = ndimage.distance_transform_edt(labels_b == 0)
    return float((dist[found] <= tol_vox).mean())


def _quartiles(v: list[float]) -> str:
    q = np.quantile(v, [0.25, 0.5, 0.75])
    return f"{q[1]:.2f} [{q[0]:.2f}-{q[2]:.2f}]"


def _corroborated(a, b, tol_vox: float) -> tuple[float, bool]:
    """Best min(score of a's finding, strongest b finding within tol_vox of it), and whether a
    corroborated finding of a touches the lesion."""
    from scipy import ndimage

    _, scores_a, labels_a, les = a
    _, scores_b, labels_b, _ = b
    if not scores_a or not scores_b:
        return 0.0, False
    dist, idx = ndimage.distance_transform_edt(labels_b == 0, return_indices=True)
    near_label = labels_b[tuple(idx)]  # the b finding nearest each voxel
    best, hit = 0.0, False
    for lab, sa in scores_a.items():
        vox = labels_a == lab
        close = vox & (dist <= tol_vox)
        if not close.any():
            continue
        sb = max(scores_b.get(int(g), 0.0) for g in np.unique(near_label[close]))
        best = max(best, min(sa, sb))
        hit = hit or bool((vox & les).any())
    return best, hit


if __name__ == "__main__":
    raise SystemExit(main())
