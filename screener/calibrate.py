"""Operating point and calibrated probabilities from a calibration set of study scores.

`fit_calibration` chooses the score threshold (flag when ``score >= threshold``) so that the
sensitivity on the abnormal calibration studies reaches the target, and states an upper
confidence bound on the false-negative rate (FNR) at that threshold, so a reader knows how
far the guarantee goes with n abnormal cases:

- ``conformal`` (default): the k-th smallest abnormal score with k = floor(alpha (n + 1)),
  alpha = 1 - target. For a new abnormal study exchangeable with the calibration ones,
  P(missed) <= k / (n + 1) <= alpha (split-conformal, marginal over calibration draws).
- ``empirical``: the largest threshold with empirical sensitivity >= target.
- ``ltt``: learn-then-test; the largest threshold whose Clopper-Pearson upper bound on the
  FNR is <= alpha at level 1 - delta (fixed-sequence testing from low thresholds up, valid
  because the FNR grows with the threshold). With few abnormal cases no threshold passes;
  then everything is flagged (threshold 0) and ``feasible`` is false.

Whatever the method, ``fnr_upper_bound`` is the one-sided Clopper-Pearson (exact binomial)
upper bound at level 1 - delta on misses / n at the chosen threshold.

The score -> P(abnormal) map is isotonic regression (pool-adjacent-violators) with each
pooled block shrunk towards 1/2 by one pseudo-count per class ((pos + 1) / (n + 2)), so a
finite calibration set never yields a probability of exactly 0 or 1.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

SCHEMA_VERSION = "1"
METHODS = ("conformal", "empirical", "ltt")


def clopper_pearson_upper(misses: int, n: int, delta: float) -> float:
    """One-sided exact upper confidence bound (level 1 - delta) on a binomial proportion."""
    from scipy.stats import beta

    if n <= 0:
        return 1.0
    if misses >= n:
        return 1.0
    return float(beta.ppf(1.0 - delta, misses + 1, n - misses))


def isotonic_fit(x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[list[float], list[float], list[int]]:
    """Pool-adjacent-violators on (x, y) sorted by x; ties in x are pooled first.

    Returns:
        (block x means, block y means, block sizes): a non-decreasing step fit.
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[order]
    # Blocks as [sum_x, sum_y, n]; equal x values always share a block.
    blocks: list[list[float]] = []
    for xv, yv in zip(xs, ys):
        if blocks and blocks[-1][0] / blocks[-1][2] == xv:
            b = blocks[-1]
            b[0] += xv
            b[1] += yv
            b[2] += 1
        else:
            blocks.append([xv, yv, 1.0])
        # >= also pools equal neighbours: maximal blocks, so shrinkage sees their full count.
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][2] >= blocks[-1][1] / blocks[-1][2]:
            last = blocks.pop()
            for i in range(3):
                blocks[-1][i] += last[i]
    return ([b[0] / b[2] for b in blocks], [b[1] / b[2] for b in blocks],
            [int(b[2]) for b in blocks])


@dataclass(frozen=True)
class Calibration:
    """A fitted operating point and score -> P(abnormal) map (saved as calibration.json)."""

    threshold: float
    target_sensitivity: float
    delta: float
    method: str
    n_abnormal: int
    n_normal: int
    misses: int
    sensitivity: float
    specificity: float | None
    fnr_upper_bound: float
    feasible: bool
    iso_x: list[float] = field(default_factory=list)
    iso_y: list[float] = field(default_factory=list)
    schema_version: str = SCHEMA_VERSION
    bound: str = "clopper-pearson"
    # sha256 of the models/model.pt whose scores were calibrated, and the settings that shaped
    # those scores (screener.binding.score_settings); None: not recorded, as in files written
    # before 2026-12-07. The screen uses an operating point only with the weights and settings
    # it was fitted with (screener.binding).
    weights_sha256: str | None = None
    settings: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown calibration method {self.method!r}")
        if not 0.0 <= self.threshold <= 1.0 or not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if len(self.iso_x) != len(self.iso_y) or not self.iso_x:
            raise ValueError("isotonic map needs matching, non-empty iso_x and iso_y")
        if any(b < a for a, b in zip(self.iso_y, self.iso_y[1:])):
            raise ValueError("isotonic map must be non-decreasing")

    def probability(self, score: float) -> float:
        """Calibrated P(abnormal | score), linear between the isotonic blocks."""
        return float(np.interp(float(score), self.iso_x, self.iso_y))

    def is_flagged(self, score: float) -> bool:
        return float(score) >= self.threshold

    def summary(self) -> dict[str, Any]:
        """The operating-point facts a report states."""
        return {"threshold": self.threshold, "target_sensitivity": self.target_sensitivity,
                "method": self.method, "n_abnormal": self.n_abnormal, "n_normal": self.n_normal,
                "calibration_sensitivity": self.sensitivity,
                "calibration_specificity": self.specificity,
                "fnr_upper_bound": self.fnr_upper_bound, "delta": self.delta,
                "bound": self.bound, "feasible": self.feasible}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        if str(data.get("schema_version")) != SCHEMA_VERSION:
            raise ValueError(f"unsupported calibration schema {data.get('schema_version')!r}")
        return cls(**data)

    def save(self, path: str | Path) -> Path:
        """Write as JSON atomically (temp name in the same folder, fsync, rename)."""
        from screener.atomic import write_text_atomic

        return write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _threshold(pos: npt.NDArray[np.float64], alpha: float, delta: float, method: str
               ) -> tuple[float, bool]:
    """Threshold on sorted abnormal scores `pos` and whether the method's goal was met."""
    n = len(pos)
    if method == "conformal":
        k = math.floor(alpha * (n + 1) + 1e-9)
        return (float(pos[k - 1]), True) if k >= 1 else (0.0, False)
    if method == "empirical":
        k = math.floor(alpha * n + 1e-9) + 1  # at most k - 1 misses
        return float(pos[min(k, n) - 1]), True
    # ltt: raise the threshold through the abnormal scores while the bound still holds.
    best, ok = 0.0, False
    for t in np.unique(pos):
        misses = int(np.sum(pos < t))
        if clopper_pearson_upper(misses, n, delta) <= alpha:
            best, ok = float(t), True
        else:
            break
    return best, ok


def fit_calibration(
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    target_sensitivity: float = 0.98,
    delta: float = 0.05,
    method: str = "conformal",
) -> Calibration:
    """Fit the operating threshold and the calibrated probability map.

    Args:
        scores: study abnormality scores in [0, 1].
        labels: 1 = abnormal, 0 = normal, same length.
        target_sensitivity: wanted sensitivity (1 - alpha).
        delta: 1 - confidence level of the stated FNR upper bound (and of ``ltt``).
        method: ``conformal`` | ``empirical`` | ``ltt`` (module docstring).

    Returns:
        The Calibration; raises ValueError without abnormal cases or with bad inputs.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(np.int64).ravel()
    if s.shape != y.shape or s.size == 0:
        raise ValueError("scores and labels must be non-empty and of equal length")
    if not np.all(np.isfinite(s)) or s.min() < 0 or s.max() > 1:
        raise ValueError("scores must be finite and in [0, 1]")
    if not set(np.unique(y)) <= {0, 1}:
        raise ValueError("labels must be 0 or 1")
    if not 0.0 < target_sensitivity < 1.0 or not 0.0 < delta < 1.0:
        raise ValueError("target_sensitivity and delta must be in (0, 1)")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    pos = np.sort(s[y == 1])
    neg = s[y == 0]
    if pos.size == 0:
        raise ValueError("calibration needs abnormal cases")
    alpha = 1.0 - target_sensitivity
    threshold, feasible = _threshold(pos, alpha, delta, method)
    misses = int(np.sum(pos < threshold))
    bx, by, bn = isotonic_fit(s, y)
    # One pseudo-count per class per block, then keep the map non-decreasing.
    shrunk = np.maximum.accumulate([(yy * n + 1.0) / (n + 2.0) for yy, n in zip(by, bn)])
    return Calibration(
        threshold=threshold, target_sensitivity=float(target_sensitivity), delta=float(delta),
        method=method, n_abnormal=int(pos.size), n_normal=int(neg.size), misses=misses,
        sensitivity=1.0 - misses / pos.size,
        specificity=float(np.mean(neg < threshold)) if neg.size else None,
        fnr_upper_bound=clopper_pearson_upper(misses, int(pos.size), delta),
        feasible=feasible, iso_x=[float(v) for v in bx], iso_y=[float(v) for v in shrunk],
    )


def fit_calibration_from_config(scores: npt.ArrayLike, labels: npt.ArrayLike,
                                cfg: Any = None) -> Calibration:
    """fit_calibration() with target_sensitivity, delta and method from the ``decide:`` section."""
    from screener.decide import decide_config

    c = decide_config(cfg)
    return fit_calibration(scores, labels, c.target_sensitivity, c.delta, c.threshold_method)
