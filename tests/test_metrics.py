"""Metrics checked against values worked out by hand (and textbook Wilson intervals)."""

from __future__ import annotations

import numpy as np
import pytest

from screener import metrics as m


def test_wilson_matches_reference_values():
    # Reference values: Wilson (1927) / statsmodels proportion_confint(method="wilson").
    lo, hi = m.wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    lo, hi = m.wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = m.wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.7225, abs=1e-4)
    assert m.wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        m.wilson_interval(3, 2)


def test_proportion_undefined_is_none():
    p = m.proportion(0, 0)
    assert p["value"] is None and p["ci95"] is None and p["n"] == 0


# Tiny set with a tie across classes (0.5 / 0.5) and an indeterminate study.
ABN = [True, True, True, False, False, False]
DEC = ["flagged", "flagged", "negative", "negative", "flagged", "indeterminate"]
SCO = [0.9, 0.5, 0.5, 0.2, 0.5, None]
CON = [0.9, 0.6, 0.7, 0.8, 0.55, None]


def test_study_level_by_hand():
    r = m.study_level(ABN, DEC, SCO, CON, n_boot=200, seed=1)
    assert r["n"] == 6 and r["n_abnormal"] == 3
    assert r["decisions"] == {"negative": 2, "flagged": 3, "indeterminate": 1, "failed": 0}
    assert r["indeterminate_rate"]["k"] == 1 and r["indeterminate_rate"]["n"] == 6
    assert r["workload_reduction"]["value"] == pytest.approx(2 / 6)
    op = r["operating_point"]
    # referred = not negative: the indeterminate normal counts as referred (fail closed).
    assert op["confusion"] == {"tp": 2, "fp": 2, "tn": 1, "fn": 1}
    assert op["sensitivity"]["value"] == pytest.approx(2 / 3)
    assert op["specificity"]["value"] == pytest.approx(1 / 3)
    assert op["ppv"]["value"] == pytest.approx(2 / 4)
    assert op["npv"]["value"] == pytest.approx(1 / 2)
    ao = r["assessed_only"]
    assert ao["confusion"] == {"tp": 2, "fp": 1, "tn": 1, "fn": 1}
    assert ao["specificity"]["value"] == pytest.approx(1 / 2)
    # AUROC: 6 abnormal/normal pairs, two ties at 0.5 count one half: 5/6.
    assert r["ranking"]["n"] == 5
    assert r["ranking"]["auroc"]["value"] == pytest.approx(5 / 6)
    # AP: threshold 0.9 -> P=1, R=1/3; threshold 0.5 -> P=3/4, R=1: 1/3 + 2/3*3/4 = 5/6.
    assert r["ranking"]["average_precision"]["value"] == pytest.approx(5 / 6)
    lo, hi = r["ranking"]["auroc"]["ci95"]
    assert 0.0 <= lo <= 5 / 6 <= hi <= 1.0
    # ECE: five single-study bins, |acc - conf| = .1 + .4 + .7 + .2 + .55 over 5.
    assert r["calibration"]["n"] == 5
    assert r["calibration"]["ece"] == pytest.approx(1.95 / 5)


def test_bootstrap_is_seeded():
    a = m.study_level(ABN, DEC, SCO, CON, n_boot=100, seed=3)["ranking"]["auroc"]["ci95"]
    b = m.study_level(ABN, DEC, SCO, CON, n_boot=100, seed=3)["ranking"]["auroc"]["ci95"]
    assert a == b


def test_all_negative_set():
    r = m.study_level([False] * 4, ["negative", "negative", "flagged", "failed"],
                      [0.1, 0.2, 0.8, None], [0.9, 0.8, 0.7, None], n_boot=50)
    op = r["operating_point"]
    assert op["sensitivity"]["value"] is None and op["sensitivity"]["n"] == 0
    assert op["npv"]["value"] == 1.0
    assert op["specificity"]["k"] == 2 and op["specificity"]["n"] == 4
    assert r["ranking"]["auroc"]["value"] is None and r["ranking"]["auroc"]["ci95"] is None
    assert r["ranking"]["average_precision"]["value"] is None
    assert r["indeterminate_rate"]["k"] == 1  # the failed study was not assessed
    assert r["workload_reduction"]["value"] == 0.5


def test_unknown_decision_rejected():
    with pytest.raises(ValueError):
        m.study_level([True], ["maybe"], [0.5], [0.5])


def test_perfect_and_inverted_ranking():
    assert m.auroc([True, False], [0.9, 0.1]) == 1.0
    assert m.auroc([True, False], [0.1, 0.9]) == 0.0
    assert m.auroc([True, True], [0.1, 0.9]) is None


def test_dice_and_voxel_auprc():
    pred = np.array([1, 1, 0, 0], bool)
    truth = np.array([1, 0, 1, 0], bool)
    assert m.dice(pred, truth) == 0.5
    assert m.dice(np.zeros(3, bool), np.zeros(3, bool)) is None
    assert m.dice(np.ones(3, bool), np.zeros(3, bool)) == 0.0
    # Scores rank the true voxel second of four: P@1 = 0, P@2 = 1/2 -> AP = 1/2.
    assert m.voxel_auprc([0.9, 0.8, 0.1, 0.0], [0, 1, 0, 0]) == pytest.approx(0.5)
    assert m.voxel_auprc([0.9, 0.8], [0, 0]) is None


def test_reliability_bins_edges():
    bins = m.reliability_bins([0.0, 1.0, 0.95], [False, True, True], n_bins=10)
    assert bins[0]["n"] == 1 and bins[9]["n"] == 2
    assert bins[9]["mean_confidence"] == pytest.approx(0.975)
    assert m.expected_calibration_error([], [], 10) is None
    with pytest.raises(ValueError):
        m.reliability_bins([1.2], [True])


def test_rate_by_bin():
    rows = m.rate_by_bin([2, 4, 6, 12, 30], [False, True, True, True, False], [0, 5, 10, 1e9])
    assert [(r["k"], r["n"]) for r in rows] == [(1, 2), (1, 1), (1, 2)]


def test_indeterminate_but_analysed_study_counts_in_ranking_only():
    # The normal study was analysed (score 0.95) but left indeterminate: of the two
    # abnormal/normal pairs, (0.99, 0.95) is ordered right and (0.2, 0.95) wrong -> AUROC 0.5;
    # at the operating point it is referred (a false positive).
    r = m.study_level([True, False, True], ["flagged", "indeterminate", "negative"],
                      [0.99, 0.95, 0.2], [0.9, None, 0.6], n_boot=0)
    assert r["ranking"]["n"] == 3 and r["ranking"]["auroc"]["value"] == pytest.approx(0.5)
    assert r["ranking"]["auroc"]["ci95"] is None  # n_boot = 0: no interval claimed
    assert r["operating_point"]["confusion"] == {"tp": 1, "fp": 1, "tn": 0, "fn": 1}
    assert r["calibration"]["n"] == 2


def test_fast_auroc_ap_and_roc_equal_their_definitions_with_ties():
    """Against brute force from the definitions: AUROC = P(pos > neg) + P(tie) / 2 over all
    pairs; ROC and AP from flagging scores >= each distinct threshold in turn."""
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(20):
        n = int(rng.integers(2, 60))
        t = rng.random(n) < 0.4
        if not (t.any() and (~t).any()):
            continue
        s = np.round(rng.random(n), 1)  # many ties
        pos, neg = s[t][:, None], s[~t][None, :]
        assert m.auroc(t, s) == pytest.approx(np.mean((pos > neg) + 0.5 * (pos == neg)), abs=1e-12)
        thresholds = np.unique(s)[::-1]
        tpr = [np.mean(s[t] >= th) for th in thresholds]
        fpr = [np.mean(s[~t] >= th) for th in thresholds]
        precision = [np.mean(t[s >= th]) for th in thresholds]
        ap = sum((r - r0) * p for r, r0, p in zip(tpr, [0.0] + tpr[:-1], precision))
        assert m.average_precision(t, s) == pytest.approx(ap, abs=1e-12)
        got_fpr, got_tpr = m.roc_points(t, s)
        np.testing.assert_allclose(got_fpr, [0.0] + fpr)
        np.testing.assert_allclose(got_tpr, [0.0] + tpr)
        checked += 1
    assert checked >= 10
    with pytest.raises(ValueError):
        m.roc_points([True, True], [0.1, 0.2])


def test_robust_sd_is_scaled_mad_with_fallbacks():
    from screener.metrics import robust_sd

    assert robust_sd([1.0, 2.0, 3.0, 4.0, 100.0]) == pytest.approx(1.4826 * 1.0)  # outlier ignored
    assert robust_sd([5.0, 5.0, 5.0, 9.0]) == pytest.approx(float(np.std([5.0, 5.0, 5.0, 9.0])))
    assert robust_sd([2.0, 2.0]) == 1e-6


def test_mad_sd_estimates_the_sd_of_normal_data_without_fallbacks():
    from screener.metrics import mad_sd

    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, 20000)
    assert mad_sd(x) == pytest.approx(2.0, rel=0.03)
    x[:1000] = 1e6  # 5 % gross outliers barely move it
    assert mad_sd(x) == pytest.approx(2.0, rel=0.1)
    assert mad_sd([5.0, 5.0, 5.0, 9.0]) == 0.0
