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

from screener.binding import default_score_settings
from screener.config import load_config
from screener.model import synth_eval
from screener.synthetic_benchmark import run_synthetic_cli


def _args(tmp_path):
    return argparse.Namespace(synthetic=5, seed=11, output=str(tmp_path / "out"), device="cpu")


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    from screener.infer import ModelConfig

    model = SimpleNamespace(weights_dir=tmp_path / "w", name="m", version="0", weights_sha256="abc",
                            config=ModelConfig())
    model.weights_dir.mkdir()
    monkeypatch.setattr("screener.pipeline.load_model", lambda config, device="auto": model)
    return model


def test_without_calibration_fails_clearly(tmp_path, fake_model, capsys):
    assert run_synthetic_cli(_args(tmp_path), load_config()) == 2
    assert "calibration.json not found" in capsys.readouterr().err
    assert not (tmp_path / "out" / "benchmark.json").exists()


@pytest.mark.parametrize("sha,settings,message", [
    ("other", "default", "not fitted on the loaded weights"),
    (None, "default", "not fitted on the loaded weights"),
    ("abc", None, "other score settings"),
    ("abc", "overlap", "model.sw_overlap: recorded 0.25, now 0.5")])
def test_calibration_of_other_weights_or_settings_fails_clearly(tmp_path, fake_model, capsys, sha,
                                                                 settings, message):
    from screener.calibrate import Calibration

    recorded = None if settings is None else default_score_settings()
    if settings == "overlap":
        recorded["model"]["sw_overlap"] = 0.25
    Calibration(threshold=0.5, target_sensitivity=0.98, delta=0.05, method="empirical",
                n_abnormal=1, n_normal=1, misses=0, sensitivity=1.0, specificity=0.0,
                fnr_upper_bound=1.0, feasible=False, iso_x=[0.0, 1.0], iso_y=[0.1, 0.9],
                weights_sha256=sha, settings=recorded
                ).save(fake_model.weights_dir / "calibration.json")
    assert run_synthetic_cli(_args(tmp_path), load_config()) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "benchmark.json").exists()


def test_table_with_intervals(tmp_path, fake_model, monkeypatch, capsys):
    from screener.calibrate import Calibration

    Calibration(threshold=0.5, target_sensitivity=0.98, delta=0.05, method="empirical",
                n_abnormal=1, n_normal=1, misses=0, sensitivity=1.0, specificity=0.0,
                fnr_upper_bound=1.0, feasible=False, iso_x=[0.0, 1.0], iso_y=[0.1, 0.9],
                weights_sha256="abc", settings=default_score_settings()
                ).save(fake_model.weights_dir / "calibration.json")
    CR = synth_eval.CaseResult
    # drawn at 10 mm (diameter_mm); binned by what they measure (last field)
    results = [CR(True, "mass", 10.0, 3.0, "FLAIR", 0.9, True, 5.0, 15.8),    # detected
               CR(True, "mass", 10.0, 3.0, "FLAIR", 0.9, False, 0.5, 12.0),   # flagged, wrong place
               CR(True, "mass", 10.0, 3.0, "FLAIR", 0.2, True, 4.0, 10.0),    # below threshold
               CR(True, "infarct", 10.0, 3.0, "FLAIR", 0.9, True, 6.0, 7.1),  # measures 5-10 mm
               CR(True, "infarct", 3.0, 3.0, "FLAIR", 0.9, False, 6.0, 2.5),  # under 3 mm: no class
               CR(False, None, None, 3.0, "T1", 0.1, False),       # negative
               CR(False, None, None, 3.0, "T1", 0.7, False)]       # false positive
    monkeypatch.setattr(synth_eval, "run_cases", lambda n, seed, space, model, config: results)
    assert run_synthetic_cli(_args(tmp_path), load_config()) == 0
    table = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    assert table["schema_version"] == "1" and table["seed"] == 11 and table["score_threshold"] == 0.5
    assert table["model"] == {"name": "m", "version": "0", "weights_sha256": "abc",
                              "settings": default_score_settings()}
    small, cell = table["cells"]  # the infarct drawn at 10 mm sits in the 5 mm class
    assert (small["diameter_mm"], small["kind"], small["n"], small["detected"]) == (5.0, "infarct", 1, 1)
    assert cell["diameter_mm"] == 10.0 and cell["kind"] == "mass"
    assert (cell["n"], cell["detected"]) == (3, 1) and cell["sensitivity"] == pytest.approx(1 / 3)
    assert cell["ci95"][0] < 1 / 3 < cell["ci95"][1]
    assert table["lesions_below_smallest_class"] == 1
    assert table["specificity"]["n"] == 2 and table["specificity"]["negative"] == 1
    assert table["n_screened"] == 7
    rows = (tmp_path / "out" / "synthetic_cases.csv").read_text().splitlines()
    png = (tmp_path / "out" / "benchmark.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert rows[0].startswith("lesion,kind,drawn_diameter_mm,measured_diameter_mm,size_class_mm,")
    assert len(rows) == 8 and rows[1].endswith("True,True,True") and ",10.0,15.8,10.0," in rows[1]
    assert ",10.0,7.1,5.0," in rows[4] and ",3.0,2.5,," in rows[5]
    assert table["by_contrast_sd"] == [
        {"diameter_mm": 5.0, "contrast_sd_min": 4.0, "n": 1, "detected": 1},
        {"diameter_mm": 10.0, "contrast_sd_min": 0.0, "n": 1, "detected": 0},
        {"diameter_mm": 10.0, "contrast_sd_min": 4.0, "n": 2, "detected": 1}]
    out = capsys.readouterr().out
    assert "lesions measuring 10-20 mm: sensitivity 1/3" in out
    assert "lesions measuring 5-10 mm: sensitivity 1/1" in out and "under 3 mm (not in any class): 1" in out
    assert "standing out 0-1 SD: sensitivity 0/1" in out and "out >= 4 SD: sensitivity 1/2" in out


def test_a_lesion_case_without_its_measured_size_is_refused():
    CR = synth_eval.CaseResult
    with pytest.raises(ValueError, match="measured diameter"):
        synth_eval.benchmark_table([CR(True, "mass", 10.0, 3.0, "T1", 0.9, True, 5.0)], 0.5, {}, 0)


def test_size_classes_are_lower_edges_of_measured_diameters():
    assert synth_eval.size_class_mm(None) is None
    assert synth_eval.size_class_mm(2.9) is None
    assert [synth_eval.size_class_mm(v) for v in (3.0, 7.1, 10.0, 19.9, 27.7, 68.0)] == [
        3.0, 5.0, 10.0, 10.0, 20.0, 40.0]


def test_measured_diameter_of_a_drawn_sphere_on_an_anisotropic_grid():
    aff = np.diag([1.0, 1.0, 3.0, 1.0])  # 3 mm slices
    z, y, x = np.mgrid[-20:21, -20:21, -7:8]
    mask = (z**2 + y**2 + (3.0 * x) ** 2) <= 12.0**2  # a 24 mm ball in world mm
    assert synth_eval.measured_diameter_mm(mask, aff) == pytest.approx(24.0, abs=1.0)
    assert synth_eval.measured_diameter_mm(np.zeros((3, 3, 3), bool), aff) is None


def test_drawn_and_measured_sizes_differ_by_kind():
    """Why the benchmark bins by measurement: the generator's size parameter is not the size a
    lesion measures (a wedge infarct is cut by the cortex, a mass carries its oedema)."""
    from screener.model.anatomy import load_all
    from screener.model.synth import SampleSpec, SynthConfig, SynthGenerator
    from screener.config import repo_path

    maps_dir = repo_path(SynthConfig().label_maps_dir)
    if not maps_dir.exists():
        pytest.skip("../shared/synth-label-maps not present")
    gen = SynthGenerator(SynthConfig(), load_all(maps_dir, 2))
    sizes = {}
    for kind in ("infarct", "mass"):
        spec = SampleSpec(lesion=True, kind=kind, diameter_mm=20.0, slice_thickness_mm=2.0,
                          contrast="T2", n_lesions=1)
        vals = [synth_eval.measured_diameter_mm(s.lesion_mask.numpy(), s.affine)
                for s in (gen.sample(seed, spec) for seed in range(8))]
        sizes[kind] = [v for v in vals if v is not None]
    assert np.median(sizes["infarct"]) < 18.0  # drawn at 20 mm, measured 13-19 mm
    assert max(sizes["mass"]) > 30.0  # a 20 mm mass with its surrounding oedema


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



def test_calibration_heads_drop_empty_and_too_small_lesions_and_keep_lesion_free_heads():
    """synth_eval.calibration_heads, which the inference benchmarks draw from: a lesion head is
    kept only when its lesion exists (and, when asked, measures enough); lesion-free heads stay."""
    import torch

    class Gen:  # lesion cubes of 0, 3 and 8 voxels of 2 mm in turn: empty, ~9 mm, ~24 mm
        def __init__(self):
            self.edges = iter([0, 3, 8] * 10)

        def sample(self, seed, spec):
            m = torch.zeros(12, 12, 12, dtype=torch.bool)
            if spec.lesion:
                k = next(self.edges)
                m[:k, :k, :k] = True
            return SimpleNamespace(lesion_mask=m, affine=np.diag([2.0, 2.0, 2.0, 1.0]))

    def kept(measured_min):
        return [(spec.lesion, int(s.lesion_mask.sum()))
                for spec, s in synth_eval.calibration_heads(Gen(), 1, 8, 3, measured_min)]

    # 8 cases: 6 lesion heads (edges 0, 3, 8, 0, 3, 8) and 2 lesion-free (cases 3 and 7)
    assert sorted(kept(None)) == [(False, 0)] * 2 + [(True, 27)] * 2 + [(True, 512)] * 2
    assert sorted(kept(10.0)) == [(False, 0)] * 2 + [(True, 512)] * 2


def test_calibration_names_the_weights_it_was_fitted_on(tmp_path, fake_model, monkeypatch):
    from screener.calibrate import Calibration
    from screener.config import load_config

    CR = synth_eval.CaseResult
    results = [CR(True, "mass", 20.0, 3.0, "FLAIR", s, True, 5.0, 25.0) for s in (0.6, 0.8, 0.9)]
    results += [CR(False, None, None, 3.0, "T1", s, False) for s in (0.1, 0.2, 0.7)]
    monkeypatch.setattr(synth_eval, "run_cases", lambda *a, **k: results)
    cal = synth_eval.calibrate(fake_model, 6, 1, load_config())
    saved = Calibration.load(fake_model.weights_dir / "calibration.json")
    assert saved == cal and saved.weights_sha256 == "abc" == fake_model.weights_sha256
    assert saved.settings == default_score_settings()
    assert (saved.n_abnormal, saved.n_normal) == (3, 3)
