"""Calibration: operating thresholds, FNR bounds and isotonic maps checked against hand answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from screener.calibrate import (Calibration, clopper_pearson_upper, fit_calibration,
                                isotonic_fit)


def test_clopper_pearson_zero_misses_closed_form():
    # With 0 misses the exact bound solves (1 - p)^n = delta.
    for n in (10, 59, 200):
        assert clopper_pearson_upper(0, n, 0.05) == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-9)
    # 59 abnormal cases and no miss: FNR <= 5 % with 95 % confidence (the "rule of 59").
    assert clopper_pearson_upper(0, 59, 0.05) < 0.05 < clopper_pearson_upper(0, 58, 0.05)
    assert clopper_pearson_upper(5, 5, 0.05) == 1.0


def test_clopper_pearson_one_miss_matches_binomial_tail():
    # Upper bound u solves P(X <= 1 | n, u) = delta.
    n, delta = 40, 0.1
    u = clopper_pearson_upper(1, n, delta)
    tail = (1 - u) ** n + n * u * (1 - u) ** (n - 1)
    assert tail == pytest.approx(delta, abs=1e-9)


def test_isotonic_pools_violators_by_hand():
    x, y, n = isotonic_fit([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1])
    assert y == [0.0, 0.5, 1.0]
    assert n == [1, 2, 1]
    assert x == pytest.approx([0.1, 0.25, 0.4])
    # Equal scores are one block whatever their labels.
    _, y2, n2 = isotonic_fit([0.5, 0.5, 0.5, 0.9], [1, 0, 0, 1])
    assert y2 == pytest.approx([1 / 3, 1.0]) and n2 == [3, 1]


def _scores(n_pos: int, n_neg: int):
    pos = np.linspace(0.3, 1.0, n_pos)  # distinct abnormal scores 0.30 .. 1.00
    neg = np.linspace(0.0, 0.4, n_neg)
    return np.concatenate([pos, neg]), np.concatenate([np.ones(n_pos), np.zeros(n_neg)]), pos


def test_conformal_threshold_is_kth_smallest_abnormal():
    s, y, pos = _scores(99, 50)
    cal = fit_calibration(s, y, target_sensitivity=0.98, delta=0.05)
    # k = floor(0.02 * 100) = 2 -> second smallest abnormal score, one miss.
    assert cal.threshold == pytest.approx(pos[1])
    assert cal.misses == 1 and cal.n_abnormal == 99 and cal.n_normal == 50
    assert cal.sensitivity == pytest.approx(98 / 99)
    assert cal.fnr_upper_bound == pytest.approx(clopper_pearson_upper(1, 99, 0.05))
    assert cal.specificity == pytest.approx(np.mean(np.linspace(0.0, 0.4, 50) < pos[1]))
    assert cal.feasible


def test_conformal_with_few_cases_flags_everything():
    s, y, _ = _scores(20, 20)  # floor(0.02 * 21) = 0: no abnormal score can be the threshold
    cal = fit_calibration(s, y, 0.98)
    assert cal.threshold == 0.0 and cal.misses == 0 and not cal.feasible
    assert cal.is_flagged(0.0)


def test_empirical_threshold_allows_floor_alpha_n_misses():
    s, y, pos = _scores(100, 10)
    cal = fit_calibration(s, y, 0.98, method="empirical")
    assert cal.threshold == pytest.approx(pos[2]) and cal.misses == 2
    assert cal.sensitivity >= 0.98


def test_ltt_needs_enough_cases_for_the_bound():
    s, y, pos = _scores(200, 10)
    cal = fit_calibration(s, y, 0.95, delta=0.05, method="ltt")
    # Largest miss count m with CP_upper(m, 200, .05) <= .05, found independently.
    m = max(k for k in range(200) if clopper_pearson_upper(k, 200, 0.05) <= 0.05)
    assert cal.misses == m and cal.threshold == pytest.approx(pos[m]) and cal.feasible
    assert cal.fnr_upper_bound <= 0.05
    small = fit_calibration(*_scores(30, 5)[:2], 0.95, method="ltt")
    assert not small.feasible and small.threshold == 0.0


def test_probability_map_is_monotone_and_shrunk():
    s, y, _ = _scores(50, 50)
    cal = fit_calibration(s, y)
    ps = [cal.probability(v) for v in np.linspace(0, 1, 101)]
    assert all(b >= a for a, b in zip(ps, ps[1:]))
    assert 0.0 < ps[0] < 0.1 and 0.9 < ps[-1] < 1.0
    # Perfectly separated blocks: the top block of n abnormal gives (n + 1) / (n + 2).
    sep = fit_calibration([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 0.5)
    assert sep.probability(0.9) == pytest.approx(3 / 4)
    assert sep.probability(0.1) == pytest.approx(1 / 4)


def test_roundtrip_json(tmp_path):
    s, y, _ = _scores(60, 40)
    cal = fit_calibration(s, y)
    path = cal.save(tmp_path / "calibration.json")
    assert Calibration.load(path) == cal
    assert json.loads(path.read_text())["schema_version"] == "1"
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize("scores,labels", [([0.1, 1.2], [0, 1]), ([0.1, math.nan], [0, 1]),
                                            ([0.1, 0.2], [0, 0]), ([0.1], [0, 1]),
                                            ([0.1, 0.2], [0, 2])])
def test_bad_inputs_raise(scores, labels):
    with pytest.raises(ValueError):
        fit_calibration(scores, labels)


def test_invalid_calibration_cannot_exist():
    with pytest.raises(ValueError):
        Calibration(threshold=0.5, target_sensitivity=0.98, delta=0.05, method="conformal",
                    n_abnormal=1, n_normal=1, misses=0, sensitivity=1.0, specificity=1.0,
                    fnr_upper_bound=0.9, feasible=True, iso_x=[0, 1], iso_y=[0.9, 0.1])


def test_fit_from_config_uses_decide_section():
    from screener.calibrate import fit_calibration_from_config
    from screener.config import load_config

    s, y, pos = _scores(99, 50)
    cfg = load_config()
    cfg["decide"] = dict(cfg["decide"], target_sensitivity=0.95, threshold_method="empirical")
    cal = fit_calibration_from_config(s, y, cfg)
    assert cal.method == "empirical" and cal.target_sensitivity == 0.95
    assert cal.misses == 4  # floor(0.05 * 99) = 4
