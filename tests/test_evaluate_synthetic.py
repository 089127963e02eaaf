"""`screener evaluate --synthetic`: the wrapper around the model's held-out benchmark.

The model side (screener.model.synth_eval.run_cases) is replaced by fixed case results so the
table, intervals and files can be checked by hand; the real run is a command, not a unit test.
"""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import numpy as np
import pytest

from screener.model import synth_eval
from screener.synthetic_benchmark import run_synthetic_cli


def _args(tmp_path):
    return argparse.Namespace(synthetic=5, seed=11, output=str(tmp_path / "out"), device="cpu")


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    model = SimpleNamespace(weights_dir=tmp_path / "w", name="m", version="0", weights_sha256="abc")
    model.weights_dir.mkdir()
    monkeypatch.setattr("screener.pipeline.load_model", lambda config, device="auto": model)
    return model


def test_without_calibration_fails_clearly(tmp_path, fake_model, capsys):
    assert run_synthetic_cli(_args(tmp_path), {}) == 2
    assert "calibration.json not found" in capsys.readouterr().err
    assert not (tmp_path / "out" / "benchmark.json").exists()


def test_table_with_intervals(tmp_path, fake_model, monkeypatch, capsys):
    from screener.calibrate import Calibration

    Calibration(threshold=0.5, target_sensitivity=0.98, delta=0.05, method="empirical",
                n_abnormal=1, n_normal=1, misses=0, sensitivity=1.0, specificity=0.0,
                fnr_upper_bound=1.0, feasible=False, iso_x=[0.0, 1.0], iso_y=[0.1, 0.9]
                ).save(fake_model.weights_dir / "calibration.json")
    CR = synth_eval.CaseResult
    results = [CR(True, "mass", 10.0, 3.0, "FLAIR", 0.9, True, 5.0),    # detected
               CR(True, "mass", 10.0, 3.0, "FLAIR", 0.9, False, 0.5),   # flagged, wrong place
               CR(True, "mass", 10.0, 3.0, "FLAIR", 0.2, True, 4.0),    # below threshold
               CR(False, None, None, 3.0, "T1", 0.1, False),       # negative
               CR(False, None, None, 3.0, "T1", 0.7, False)]       # false positive
    monkeypatch.setattr(synth_eval, "run_cases", lambda n, seed, space, model, config: results)
    assert run_synthetic_cli(_args(tmp_path), {}) == 0
    table = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    assert table["schema_version"] == "1" and table["seed"] == 11 and table["score_threshold"] == 0.5
    assert table["model"] == {"name": "m", "version": "0", "weights_sha256": "abc"}
    (cell,) = table["cells"]
    assert (cell["n"], cell["detected"]) == (3, 1) and cell["sensitivity"] == pytest.approx(1 / 3)
    assert cell["ci95"][0] < 1 / 3 < cell["ci95"][1]
    assert table["specificity"]["n"] == 2 and table["specificity"]["negative"] == 1
    assert table["n_screened"] == 5
    rows = (tmp_path / "out" / "synthetic_cases.csv").read_text().splitlines()
    assert len(rows) == 6 and rows[1].endswith("True,True,True") and ",5.0," in rows[1]
    assert table["by_contrast_sd"] == [
        {"diameter_mm": 10.0, "contrast_sd_min": 0.0, "n": 1, "detected": 0},
        {"diameter_mm": 10.0, "contrast_sd_min": 4.0, "n": 2, "detected": 1}]
    out = capsys.readouterr().out
    assert "diameter 10 mm: sensitivity 1/3" in out
    assert "standing out 0-1 SD: sensitivity 0/1" in out and "out >= 4 SD: sensitivity 1/2" in out


def test_lesion_contrast_sd_measures_against_the_surrounding_brain():
    from screener.model.anatomy import Tissue

    rng = np.random.default_rng(0)
    target = np.full((30, 30, 30), int(Tissue.WM), np.uint8)
    target[:, :, 20:] = int(Tissue.GM)
    target[12:18, 12:18, 12:18] = int(Tissue.LESION)
    image = rng.normal(1.0, 0.1, target.shape)
    assert synth_eval.lesion_contrast_sd(image, target) < 0.5  # drawn invisible
    image[target == int(Tissue.LESION)] += 0.3
    assert synth_eval.lesion_contrast_sd(image, target) == pytest.approx(3.0, rel=0.2)
    assert synth_eval.lesion_contrast_sd(image, np.full_like(target, int(Tissue.WM))) is None
