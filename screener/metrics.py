"""Pure evaluation metrics: proportions with Wilson intervals, ROC/PR, calibration, Dice.

Everything here works on plain arrays and lists so it can be checked by hand on tiny sets.
Undefined quantities (a sensitivity with no abnormal study, an AUROC with one class) are
`None`, never a made-up number; every proportion carries its numerator and denominator.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def mad_sd(values: npt.ArrayLike) -> float:
    """1.4826 x the median absolute deviation: the SD for normal data, robust to outliers
    (0 when more than half the values are equal; NaN for no values)."""
    v = np.asarray(values)
    return 1.4826 * float(np.median(np.abs(v - np.median(v))))


def robust_sd(values: npt.ArrayLike) -> float:
    """`mad_sd`; the plain SD when the MAD is 0, and 1e-6 when that is 0 too, so it can always
    divide."""
    v = np.asarray(values, dtype=float)
    return mad_sd(v) or float(np.std(v)) or 1e-6


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a binomial proportion k/n.

    Args:
        k: successes.
        n: trials.
        z: normal quantile (1.96 for 95 %).

    Returns:
        (low, high), or None when n == 0.
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"invalid proportion {k}/{n}")
    if n == 0:
        return None
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At k == 0 or k == n the bound is exactly 0 or 1; avoid rounding to 0.9999999.
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def proportion(k: int, n: int) -> dict[str, Any]:
    """A proportion as a JSON-ready dict: value, k, n and its 95 % Wilson interval."""
    ci = wilson_interval(k, n)
    return {"value": (k / n) if n else None, "k": int(k), "n": int(n),
            "ci95": list(ci) if ci else None, "ci_method": "wilson"}


@dataclass(frozen=True)
class Confusion:
    """Counts of a binary call against the truth (positive = abnormal / referred)."""

    tp: int
    fp: int
    tn: int
    fn: int

    @classmethod
    def from_arrays(cls, truth: Sequence[bool], called: Sequence[bool]) -> Confusion:
        t = np.asarray(truth, dtype=bool)
        c = np.asarray(called, dtype=bool)
        if t.shape != c.shape:
            raise ValueError("truth and calls differ in length")
        return cls(tp=int(np.sum(t & c)), fp=int(np.sum(~t & c)),
                   tn=int(np.sum(~t & ~c)), fn=int(np.sum(t & ~c)))

    def rates(self) -> dict[str, dict[str, Any]]:
        """Sensitivity, specificity, PPV and NPV with Wilson intervals."""
        return {
            "sensitivity": proportion(self.tp, self.tp + self.fn),
            "specificity": proportion(self.tn, self.tn + self.fp),
            "ppv": proportion(self.tp, self.tp + self.fp),
            "npv": proportion(self.tn, self.tn + self.fn),
        }

    def as_dict(self) -> dict[str, int]:
        return {"tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn}


def _two_classes(truth: npt.NDArray[np.bool_]) -> bool:
    return bool(truth.any() and (~truth).any())


def auroc(truth: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve (Mann-Whitney; ties count one half); None unless both classes
    are present. Same value as sklearn.metrics.roc_auc_score, fast enough to bootstrap."""
    from scipy.stats import rankdata

    t = np.asarray(truth, dtype=bool)
    if not _two_classes(t):
        return None
    ranks = rankdata(np.asarray(scores, dtype=float))
    n1, n0 = int(t.sum()), int((~t).sum())
    return float((ranks[t].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _flagged_at_thresholds(t: npt.NDArray[np.bool_], scores: Sequence[float]
                           ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Flagging scores >= each distinct score, strictest first: how many are flagged and how
    many of them are positive (ties always flagged together)."""
    s = np.asarray(scores, dtype=float)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, t_sorted = s[order], t[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]  # end of each tie group
    return last + 1, np.cumsum(t_sorted)[last]


def roc_points(truth: Sequence[bool], scores: Sequence[float]
               ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The ROC curve: (false-positive rate, true-positive rate) when flagging scores >= each
    distinct score, from the strictest threshold down, starting at (0, 0). Both classes needed."""
    t = np.asarray(truth, dtype=bool)
    if not _two_classes(t):
        raise ValueError("a ROC curve needs both classes")
    flagged, tps = _flagged_at_thresholds(t, scores)
    return np.r_[0.0, (flagged - tps) / (~t).sum()], np.r_[0.0, tps / t.sum()]


def average_precision(truth: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Average precision: sum over distinct score thresholds of (recall step) x precision,
    as sklearn.metrics.average_precision_score; None without a positive."""
    t = np.asarray(truth, dtype=bool)
    if not t.any():
        return None
    flagged, tps = _flagged_at_thresholds(t, scores)
    precision = tps / flagged
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def bootstrap_ci(
    metric: Callable[[npt.NDArray[np.bool_], npt.NDArray[np.float64]], float | None],
    truth: Sequence[bool],
    scores: Sequence[float],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of `metric`, resampling within each class (stratified).

    Returns None when the metric is undefined on the full set or n_boot is 0.
    """
    t = np.asarray(truth, dtype=bool)
    s = np.asarray(scores, dtype=float)
    if n_boot <= 0 or metric(t, s) is None:
        return None
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(t), np.flatnonzero(~t)
    values = []
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(pos, pos.size, replace=True) if pos.size else pos,
                              rng.choice(neg, neg.size, replace=True) if neg.size else neg])
        v = metric(t[idx], s[idx])
        if v is not None:
            values.append(v)
    if not values:
        return None
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def ranking_metrics(truth: Sequence[bool], scores: Sequence[float], *, n_boot: int,
                    seed: int) -> dict[str, Any]:
    """AUROC and average precision with stratified bootstrap 95 % intervals."""
    t = np.asarray(truth, dtype=bool)
    s = np.asarray(scores, dtype=float)
    out: dict[str, Any] = {"n": int(t.size), "n_abnormal": int(t.sum())}
    for name, fn in (("auroc", auroc), ("average_precision", average_precision)):
        value = fn(t, s)
        ci = bootstrap_ci(fn, t, s, n_boot=n_boot, seed=seed) if value is not None else None
        out[name] = {"value": value, "ci95": list(ci) if ci else None,
                     "ci_method": f"stratified bootstrap, {n_boot} resamples, seed {seed}"}
    return out


def reliability_bins(confidence: Sequence[float], correct: Sequence[bool],
                     n_bins: int = 10) -> list[dict[str, Any]]:
    """Equal-width confidence bins on [0, 1]: count, mean confidence, observed accuracy.

    A confidence of exactly 1.0 falls in the last bin; each bin is [lo, hi) otherwise.
    """
    c = np.asarray(confidence, dtype=float)
    ok = np.asarray(correct, dtype=bool)
    if c.shape != ok.shape:
        raise ValueError("confidence and correct differ in length")
    if np.any((c < 0) | (c > 1)) or not np.all(np.isfinite(c)):
        raise ValueError("confidence must lie in [0, 1]")
    idx = np.minimum((c * n_bins).astype(int), n_bins - 1)
    bins = []
    for b in range(n_bins):
        sel = idx == b
        n = int(sel.sum())
        bins.append({"lo": b / n_bins, "hi": (b + 1) / n_bins, "n": n,
                     "mean_confidence": float(c[sel].mean()) if n else None,
                     "accuracy": float(ok[sel].mean()) if n else None})
    return bins


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool],
                               n_bins: int = 10) -> float | None:
    """ECE = sum over bins of (n_bin / n) * |accuracy - mean confidence|; None when empty."""
    bins = reliability_bins(confidence, correct, n_bins)
    n = sum(b["n"] for b in bins)
    if n == 0:
        return None
    return float(sum(b["n"] / n * abs(b["accuracy"] - b["mean_confidence"])
                     for b in bins if b["n"]))


def dice(pred: npt.ArrayLike, truth: npt.ArrayLike) -> float | None:
    """Dice overlap of two binary masks; None when both are empty (undefined)."""
    p = np.asarray(pred, dtype=bool)
    t = np.asarray(truth, dtype=bool)
    if p.shape != t.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {t.shape}")
    denom = int(p.sum()) + int(t.sum())
    if denom == 0:
        return None
    return 2.0 * int(np.sum(p & t)) / denom


def voxel_auprc(scores: npt.ArrayLike, truth: npt.ArrayLike) -> float | None:
    """Average precision of voxel scores against a binary mask; None without a true voxel."""
    s = np.asarray(scores, dtype=np.float32).ravel()
    t = np.asarray(truth, dtype=bool).ravel()
    if s.shape != t.shape:
        raise ValueError("score map and mask differ in size")
    return average_precision(t, np.nan_to_num(s, nan=0.0))


def rate_by_bin(values: Sequence[float], hits: Sequence[bool],
                edges: Sequence[float]) -> list[dict[str, Any]]:
    """Hit rate (with Wilson interval) of items grouped by `values` into [edge_i, edge_i+1)."""
    v = np.asarray(values, dtype=float)
    h = np.asarray(hits, dtype=bool)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (v >= lo) & (v < hi)
        row = {"lo": float(lo), "hi": float(hi)}
        row.update(proportion(int(h[sel].sum()), int(sel.sum())))
        out.append(row)
    return out


ASSESSED = ("negative", "flagged")


def _finite(x: float | None) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def study_level(
    abnormal: Sequence[bool],
    decisions: Sequence[str],
    scores: Sequence[float | None],
    confidences: Sequence[float | None],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    n_bins: int = 10,
) -> dict[str, Any]:
    """Study-level figures of one method on one set of studies.

    Two readings of the operating point are reported:
    - `operating_point` (fail-closed, the triage view): a study counts as referred unless it
      was called `negative`; indeterminate and failed studies are referred to a reader.
    - `assessed_only`: flagged vs negative on the studies that were assessed.
    AUROC / AP use every study with a finite score (the caller passes None for studies that
    were not analysed); calibration uses assessed studies with a finite confidence.

    Args:
        abnormal: truth per study (True = abnormal).
        decisions: "negative" | "flagged" | "indeterminate" | "failed" per study.
        scores: abnormality score per study (None when absent or not analysed).
        confidences: calibrated confidence of the decision (None when absent).
        n_boot: bootstrap resamples for the AUROC / AP intervals.
        seed: bootstrap seed.
        n_bins: calibration bins.

    Returns:
        JSON-ready dict.
    """
    t = np.asarray(abnormal, dtype=bool)
    d = np.asarray(list(decisions), dtype=object)
    n = int(t.size)
    if not (len(d) == len(scores) == len(confidences) == n):
        raise ValueError("per-study inputs differ in length")
    counts = {k: int(np.sum(d == k)) for k in ("negative", "flagged", "indeterminate", "failed")}
    unknown = set(d.tolist()) - set(counts)
    if unknown:
        raise ValueError(f"unknown decision(s) {sorted(unknown)}")
    assessed = np.isin(d, ASSESSED)
    referred = d != "negative"
    op = Confusion.from_arrays(t, referred)
    ao = Confusion.from_arrays(t[assessed], (d[assessed] == "flagged"))
    # Ranking: every study with a finite score. Callers pass None for studies that were not
    # analysed (a score of 0 from a study that was never looked at is not "very normal").
    has_score = np.array([_finite(s) for s in scores], dtype=bool)
    s = np.array([float(x) if _finite(x) else np.nan for x in scores])
    has_conf = assessed & np.array([_finite(c) for c in confidences], dtype=bool)
    c = np.array([float(x) if _finite(x) else np.nan for x in confidences])
    correct = (d == "flagged") == t
    bins = reliability_bins(c[has_conf], correct[has_conf], n_bins)
    return {
        "n": n, "n_abnormal": int(t.sum()), "n_normal": int((~t).sum()),
        "decisions": counts,
        "indeterminate_rate": proportion(counts["indeterminate"] + counts["failed"], n),
        "workload_reduction": proportion(counts["negative"], n),
        "operating_point": {"definition": "referred = any decision other than negative",
                            "confusion": op.as_dict(), **op.rates()},
        "assessed_only": {"definition": "flagged vs negative, assessed studies only",
                          "confusion": ao.as_dict(), **ao.rates()},
        "ranking": ranking_metrics(t[has_score], s[has_score], n_boot=n_boot, seed=seed),
        "calibration": {"n": int(has_conf.sum()),
                        "ece": expected_calibration_error(c[has_conf], correct[has_conf], n_bins),
                        "bins": bins,
                        "definition": "confidence = probability the decision (flagged/negative) "
                                      "is right; assessed studies only"},
    }
