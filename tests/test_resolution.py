"""Resolution limits from a benchmark table whose answers are known by hand."""

from __future__ import annotations

import json

import pytest

from screener.resolution import (
    benchmark_contrast,
    best_limits,
    load_benchmark,
    resolution_limits,
    sensitivity_table,
)


def cell(d, t, detected, n=10, kind="mass", contrast="T2"):
    return {"diameter_mm": d, "slice_thickness_mm": t, "kind": kind, "contrast": contrast,
            "n": n, "detected": detected, "sensitivity": detected / n}


@pytest.fixture
def bench(tmp_path):
    cells = [
        # 1 mm slices: 3 mm lesions 9/10 pooled over two kinds (10/10 + 8/10 -> 18/20).
        cell(3, 1, 10, kind="mass"), cell(3, 1, 8, kind="oedema"),
        cell(5, 1, 10, kind="mass"), cell(5, 1, 10, kind="oedema"),
        cell(10, 1, 10, kind="mass"), cell(10, 1, 10, kind="oedema"),
        # 3 mm slices: 3 mm fails, 5 mm passes.
        cell(3, 3, 5), cell(5, 3, 9), cell(10, 3, 10),
        # 5 mm slices: a lucky 3 mm cell below a failing 5 mm cell must not be claimed.
        cell(3, 5, 10), cell(5, 5, 8), cell(10, 5, 10), cell(20, 5, 10),
        # 7 mm: nothing reaches 90 %.
        cell(10, 7, 5), cell(20, 7, 8),
    ]
    data = {"schema_version": "1", "model": {"name": "m"}, "seed": 1, "score_threshold": 0.5,
            "cells": cells, "specificity": {"n": 10, "negative": 9, "value": 0.9}}
    path = tmp_path / "benchmark.json"
    path.write_text(json.dumps(data))
    return load_benchmark(path)


def test_pooled_and_worst_kind_tables(bench):
    pooled = sensitivity_table(bench, 1.0)
    assert pooled[3.0] == (0.9, 20)
    worst = sensitivity_table(bench, 1.0, "worst_kind")
    assert worst[3.0] == (0.8, 10)


def test_min_diameter_at_same_thickness(bench):
    lim = resolution_limits((1.0, 1.0, 1.0), 1.0, 0.0, bench)
    assert lim["min_detectable_diameter_mm"] == 3.0
    assert lim["sensitivity_at_min_diameter"] == 0.9 and lim["benchmark_n"] == 20
    assert lim["benchmark_slice_thickness_mm"] == 1.0
    s = lim["statement"]
    for words in ("structural", "function", "microscopic", "molecular", "systemic",
                  "3 mm", "Clinical correlation required"):
        assert words in s
    worst = resolution_limits((1.0, 1.0, 1.0), 1.0, 0.0, bench, aggregate="worst_kind")
    assert worst["min_detectable_diameter_mm"] == 5.0


def test_thicker_study_uses_next_thicker_benchmark(bench):
    # 2 mm slices: nearest benchmarked thickness >= 2 is 3 mm -> 5 mm claim (not the 1 mm row).
    lim = resolution_limits((0.9, 0.9, 2.0), 2.0, 0.0, bench)
    assert lim["benchmark_slice_thickness_mm"] == 3.0 and lim["min_detectable_diameter_mm"] == 5.0


def test_gap_counts_towards_thickness(bench):
    # 2 mm thick + 1.5 mm gap = sampled every 3.5 mm -> 5 mm row.
    lim = resolution_limits((0.9, 0.9, 3.5), 2.0, 1.5, bench)
    assert lim["benchmark_slice_thickness_mm"] == 5.0
    assert lim["slice_gap_mm"] == 1.5


def test_claim_needs_every_larger_diameter_to_pass(bench):
    lim = resolution_limits((0.9, 0.9, 5.0), 5.0, 0.0, bench)
    assert lim["min_detectable_diameter_mm"] == 10.0 and lim["sensitivity_at_min_diameter"] == 1.0


def test_claim_needs_enough_lesions_of_that_size_or_more(tmp_path):
    def limits(cells, min_n=10):
        data = {"schema_version": "1", "model": {}, "seed": 1, "score_threshold": 0.5,
                "cells": cells, "specificity": {"n": 1, "negative": 1, "value": 1.0}}
        path = tmp_path / "b.json"
        path.write_text(json.dumps(data))
        return resolution_limits((1, 1, 3), 3.0, 0.0, load_benchmark(path), min_n=min_n)

    # 2/2 at 40 mm above a failing 20 mm class: no claim, and the reason says why.
    lone = limits([cell(20, 3, 8, n=9), cell(40, 3, 2, n=2)])
    assert lone["min_detectable_diameter_mm"] is None
    assert "on at least 10 lesions of that size or more" in lone["no_claim_reason"]
    lenient = limits([cell(20, 3, 8, n=9), cell(40, 3, 2, n=2)], min_n=2)
    assert lenient["min_detectable_diameter_mm"] == 40.0
    # 7/7 at 40 mm is too few alone; with 8/8 at 20 mm below it the claim is 20 mm (15 lesions).
    both = limits([cell(10, 3, 7, n=12), cell(20, 3, 8, n=8), cell(40, 3, 7, n=7)])
    assert both["min_detectable_diameter_mm"] == 20.0 and both["benchmark_n"] == 8


def test_no_claim_cases(bench):
    none_pass = resolution_limits((0.9, 0.9, 7.0), 7.0, 0.0, bench)
    assert none_pass["min_detectable_diameter_mm"] is None
    assert "No lesion-size claim" in none_pass["statement"]
    too_thick = resolution_limits((0.9, 0.9, 8.0), 8.0, 0.0, bench)
    assert too_thick["min_detectable_diameter_mm"] is None
    assert "beyond the thickest benchmarked" in too_thick["no_claim_reason"]
    no_bench = resolution_limits((1, 1, 1), 1.0, 0.0, None)
    assert no_bench["min_detectable_diameter_mm"] is None
    assert "Clinical correlation required" in no_bench["statement"]


def test_best_limits_prefers_smallest_claim(bench):
    a = resolution_limits((1, 1, 1), 1.0, 0.0, bench)
    b = resolution_limits((0.9, 0.9, 5.0), 5.0, 0.0, bench)
    c = resolution_limits((0.9, 0.9, 8.0), 8.0, 0.0, bench)
    assert best_limits([b, c, a]) is a
    assert best_limits([c]) is c and best_limits([]) is None


def test_malformed_benchmark_raises(tmp_path):
    p = tmp_path / "b.json"
    p.write_text(json.dumps({"schema_version": "1", "cells": [cell(3, 1, 11)]}))
    with pytest.raises(ValueError):
        load_benchmark(p)
    p.write_text(json.dumps({"schema_version": "2", "cells": [cell(3, 1, 1)]}))
    with pytest.raises(ValueError):
        load_benchmark(p)
    p.write_text(json.dumps({"schema_version": "1", "cells": [{"diameter_mm": 3}]}))
    with pytest.raises(ValueError):
        load_benchmark(p)


def test_claim_rests_on_the_series_own_contrast(tmp_path):
    # 5 mm slices: FLAIR lesions are found (20/20 at 10 and 20 mm), T1 lesions are not (5/10 at
    # 10 mm, 8/10 at 20 mm). Pooled over contrasts, 20 mm reaches 28/30 = 0.93 and is claimed; a
    # T1 study must not inherit that claim, since its own 20 mm lesions were found 8/10.
    cells = [cell(10, 5, 10, contrast="FLAIR"), cell(20, 5, 10, contrast="FLAIR"),
             cell(10, 5, 5, contrast="T1"), cell(20, 5, 8, contrast="T1"),
             cell(20, 5, 10, contrast="T2")]
    data = {"schema_version": "1", "model": {}, "seed": 1, "score_threshold": 0.5, "cells": cells,
            "specificity": {"n": 1, "negative": 1, "value": 1.0}}
    path = tmp_path / "b.json"
    path.write_text(json.dumps(data))
    bench = load_benchmark(path)
    assert bench.contrasts == ["FLAIR", "T1", "T2"]

    def lim(sequence, match=True):
        return resolution_limits((1, 1, 5), 5.0, 0.0, bench,
                                 contrast=benchmark_contrast(sequence), match_contrast=match)

    pooled = lim("T1", match=False)
    assert pooled["min_detectable_diameter_mm"] == 20.0 and pooled["benchmark_n"] == 30
    assert pooled["benchmark_contrast"] is None
    flair = lim("FLAIR")
    assert flair["min_detectable_diameter_mm"] == 10.0 and flair["benchmark_n"] == 10
    assert flair["benchmark_contrast"] == "FLAIR"
    assert "synthetic FLAIR lesions" in flair["statement"]
    for sequence in ("T1", "T1c"):  # contrast-enhanced T1 is judged by the T1 lesions
        t1 = lim(sequence)
        assert t1["min_detectable_diameter_mm"] is None and t1["benchmark_contrast"] == "T1"
        assert "of T1 images" in t1["no_claim_reason"]
    pd = lim("PD")
    assert pd["min_detectable_diameter_mm"] is None
    assert pd["no_claim_reason"] == "the benchmark holds no PD lesions"
    from screener.types import SequenceClass

    assert benchmark_contrast(SequenceClass.T1C) == "T1"  # the enum itself, as the pipeline passes it
    assert benchmark_contrast(None) is None
    other = lim("DWI")
    assert benchmark_contrast("DWI") is None and other["min_detectable_diameter_mm"] is None
    assert "no benchmark counterpart" in other["no_claim_reason"]
    # A FLAIR and a T1 series of one study: the FLAIR's claim is the study's.
    assert best_limits([lim("T1"), flair]) is flair


def test_resolution_contrast_setting_is_checked():
    import dataclasses

    from screener.decide import decide_config

    c = decide_config()
    assert c.resolution_contrast == "matched"  # the shipped default
    with pytest.raises(ValueError, match="resolution_contrast"):
        dataclasses.replace(c, resolution_contrast="per_kind")
