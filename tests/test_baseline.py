"""FLAIR-threshold baseline: brain mask, robust z, components, decision (by construction)."""

from __future__ import annotations

import numpy as np
import pytest

from screener.baseline import BaselineConfig, robust_z, simple_brain_mask, threshold_map


def _head(lesion: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    d = np.zeros((40, 40, 20), np.float32)
    d[5:35, 5:35, 2:18] = rng.uniform(10, 20, (30, 30, 16))
    if lesion:
        d[15:25, 15:25, 8:12] = 100.0  # 10 x 10 x 4 mm = 0.4 ml
    return d


def test_flags_only_the_bright_block():
    cfg = BaselineConfig(z_threshold=3.0, min_component_ml=0.05, flag_volume_ml=0.3)
    aff = np.eye(4)
    d = _head(True)
    brain = simple_brain_mask(d)
    assert brain.sum() == 30 * 30 * 16  # padding branch: every non-zero voxel
    r = threshold_map(d, aff, brain, cfg)
    assert r.decision == "flagged" and r.score == pytest.approx(0.4)
    assert np.array_equal(r.zmap > 3.0, d == 100.0)
    neg = threshold_map(_head(False), aff, simple_brain_mask(_head(False)), cfg)
    assert neg.decision == "negative" and neg.score == 0.0


def test_small_components_dropped_and_flat_brain_indeterminate():
    cfg = BaselineConfig(z_threshold=3.0, min_component_ml=0.5, flag_volume_ml=0.1)
    d = _head(True)
    r = threshold_map(d, np.eye(4), simple_brain_mask(d), cfg)
    assert r.score == 0.0 and r.decision == "negative" and not (r.zmap > 3.0).any()
    flat = np.ones((10, 10, 10), np.float32)
    assert robust_z(flat, flat > 0) is None
    assert threshold_map(flat, np.eye(4), flat > 0, cfg).decision == "indeterminate"


def test_simple_mask_with_skull_like_ring_keeps_the_brain():
    # A bright 'scalp' shell separated from a bright 'brain' ball by a dark 'skull' gap.
    g = np.indices((60, 60, 60)).astype(np.float32) - 29.5
    r = np.sqrt((g ** 2).sum(0))
    rng = np.random.default_rng(1)
    d = rng.normal(5, 1, r.shape).astype(np.float32)
    d[r < 20] += 100
    d[(r > 24) & (r < 27)] += 100
    m = simple_brain_mask(d, (1.0, 1.0, 1.0), opening_mm=2.0)
    assert m[r < 18].all() and not m[(r > 25) & (r < 26)].any()
