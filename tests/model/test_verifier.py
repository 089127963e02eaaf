"""The finding verifier: features of a finding, fit/save/load, rescoring, and the bundle's checks."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import pytest

from screener.model.anatomy import Tissue
from screener.model.verifier import (FEATURES, VERIFIER_FILE, Verifier, finding_features, fit,
                                     rescore)


def _scene():
    """A 40^3 grid of 2 mm voxels: judged region a 30^3 cube; finding 1 a 4^3 cube deep inside on
    white matter, finding 2 a 2x2x6 bar on the region's edge on grey matter."""
    shape = (40, 40, 40)
    judged = np.zeros(shape, bool)
    judged[5:35, 5:35, 5:35] = True
    labels = np.zeros(shape, np.int32)
    labels[18:22, 18:22, 18:22] = 1
    labels[5:7, 10:12, 10:16] = 2
    fused = np.where(labels > 0, 0.8, 0.1).astype(np.float32)
    fused[18, 18, 18] = 0.95
    learned = np.where(labels == 1, 0.7, 0.0).astype(np.float32)
    z = np.where(labels == 2, -5.0, 1.0).astype(np.float32)
    tissue = np.full(shape, int(Tissue.WM), np.uint8)
    tissue[labels == 2] = int(Tissue.GM)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    return labels, fused, learned, z, tissue, judged, affine


def test_finding_features_describe_each_finding():
    labels, fused, learned, z, tissue, judged, affine = _scene()
    x = finding_features(labels, 2, fused, learned, z, tissue, judged, affine, [8.0 * math.sqrt(3), 13.0])
    f = dict(zip(FEATURES, x[0]))
    assert x.shape == (2, len(FEATURES))
    assert f["log_volume_ml"] == pytest.approx(math.log(64 * 0.008))
    assert f["fused_max"] == pytest.approx(0.95) and f["fused_mean"] == pytest.approx((63 * 0.8 + 0.95) / 64)
    assert f["learned_max"] == pytest.approx(0.7) and f["learned_share"] == 1.0
    assert f["edge_share"] == 0.0 and f["wm_share"] == 1.0 and f["gm_share"] == 0.0
    assert f["abs_z_median"] == 1.0 and f["z_median"] == 1.0
    g = dict(zip(FEATURES, x[1]))
    assert g["edge_share"] == 1.0 and g["gm_share"] == 1.0 and g["learned_share"] == 0.0
    assert g["z_median"] == -5.0 and g["abs_z_median"] == 5.0
    assert 0.0 < g["compactness"] < f["compactness"] <= 1.0
    with pytest.raises(ValueError, match="no voxels"):
        finding_features(labels, 3, fused, learned, z, tissue, judged, affine, [1.0, 1.0, 1.0])


def _fitted(tmp_path=None) -> tuple[Verifier, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(FEATURES)))
    y = (x[:, 3] - x[:, 8] + rng.normal(scale=0.5, size=400)) > 0  # learned_max up, edge down
    return fit(x, y, provenance={"what": "test"}), x, y


def test_fit_is_the_penalised_optimum_and_round_trips(tmp_path):
    v, x, y = _fitted()
    assert v.coef[FEATURES.index("learned_max")] > 0 > v.coef[FEATURES.index("edge_share")]
    # At the optimum the gradient of the L2-penalised log-loss (C = 1) vanishes.
    z = (x - np.asarray(v.mean)) / np.asarray(v.scale)
    residual = v.probability(x) - y
    np.testing.assert_allclose(z.T @ residual + np.asarray(v.coef), 0.0, atol=1e-4)
    assert abs(residual.sum()) < 1e-4
    # With much data and a weak penalty it recovers the generating model's coefficients.
    rng = np.random.default_rng(1)
    big = rng.normal(size=(40000, len(FEATURES)))
    true = np.zeros(len(FEATURES))
    true[0], true[5] = 1.5, -2.0
    yy = rng.random(40000) < 1 / (1 + np.exp(-(big @ true - 0.5)))
    w = fit(big, yy, c=100.0)
    np.testing.assert_allclose(np.asarray(w.coef) / np.asarray(w.scale), true, atol=0.08)
    assert abs(w.intercept - float(np.dot(w.coef, np.asarray(w.mean) / np.asarray(w.scale))) + 0.5) < 0.08
    back = Verifier.load(v.save(tmp_path))
    assert back == v
    np.testing.assert_allclose(back.probability(x), v.probability(x))
    with pytest.raises(ValueError, match="features"):
        v.probability(x[:, :3])
    with pytest.raises(ValueError, match="both kinds"):
        fit(x, np.zeros(len(x), bool))
    with pytest.raises(ValueError, match="positive"):
        fit(x, y, c=0.0)


@pytest.mark.parametrize("change", [{"features": ["a"] * len(FEATURES)}, {"coef": [1.0]},
                                    {"scale": [0.0] * len(FEATURES)}, {"intercept": float("nan")}])
def test_load_refuses_a_verifier_that_does_not_fit(tmp_path, change):
    v, _, _ = _fitted()
    path = v.save(tmp_path)
    d = json.loads(path.read_text())
    d.update(change)
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError):
        Verifier.load(path)


def _faces():
    from screener.decide import decide_config

    return dataclasses.replace(decide_config(), connectivity=1)


def test_rescore_makes_the_verifier_probability_the_score():
    from screener.decide import analyse_series

    labels, fused, learned, z, tissue, judged, affine = _scene()
    a = analyse_series(fused, judged, np.zeros(labels.shape), affine, "s", _faces())
    assert len(a.findings) == 2
    by_label = sorted(a.findings, key=lambda f: f.label)
    x = finding_features(a.labels, 2, fused, learned, z, tissue, judged, affine,
                         [f.max_diameter_mm for f in by_label])
    v = Verifier(features=FEATURES, mean=(0.0,) * len(FEATURES), scale=(1.0,) * len(FEATURES),
                 coef=tuple(4.0 if n == "edge_share" else 0.0 for n in FEATURES), intercept=-2.0,
                 provenance={})
    r = rescore(a, x, v)
    # Only the edge finding has edge_share 1: sigmoid(2) against sigmoid(-2).
    top = r.findings[0]
    assert top.verifier_probability == pytest.approx(1 / (1 + math.exp(-2))) == top.score
    assert r.score == top.score and top.to_dict()["verifier_probability"] == round(top.score, 4)
    assert r.findings[1].score == pytest.approx(1 / (1 + math.exp(2)))
    assert {f.label for f in r.findings} == {1, 2} and r.labels is a.labels
    assert "verifier_probability" not in a.findings[0].to_dict()
    x[1, FEATURES.index("z_median")] = np.nan  # e.g. a broken outlier map: refused, not scored
    with pytest.raises(ValueError, match="NaN"):
        rescore(a, x, v)


@pytest.mark.slow
def test_train_verifier_writes_a_checked_verifier_the_screen_uses(tmp_path, shared):
    """Fit on a few training-map heads with the shipped network; the bundle records its
    checksum, load_model carries it, run_case scores with it, and a changed file is refused."""
    shared("synth-label-maps")
    from screener.config import REPO_ROOT
    from screener.infer import ModelConfig, load_model
    from screener.model.bundle import WeightsError, load_bundle
    from screener.model.verifier import train_verifier

    wdir = tmp_path / "w"
    shutil.copytree(REPO_ROOT / "weights" / "screener-synth-v1", wdir)
    (wdir / VERIFIER_FILE).unlink(missing_ok=True)
    meta_path = wdir / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["sha256"].pop(VERIFIER_FILE, None)
    meta_path.write_text(json.dumps(meta))
    v = train_verifier(wdir, n=5, seed=5, progress=False)
    assert v.provenance["heads"] >= 4 and v.provenance["findings_on_lesions"] >= 1
    meta, _ = load_bundle(wdir)
    assert meta["verifier"]["features"] == list(FEATURES)
    model = load_model(ModelConfig(weights=str(wdir)), "cpu")
    assert model.verifier == v
    assert load_model(ModelConfig(weights=str(wdir), use_verifier=False), "cpu").verifier is None

    from screener.model import synth_eval
    from screener.model.verifier import analyse_prediction

    gen, run_seed = synth_eval._generator(model.metadata)
    spec_sample = next(synth_eval.calibration_heads(gen, run_seed, 1, 5))
    from screener.config import load_config

    score, _ = synth_eval.run_case(spec_sample[1], model, load_config())
    img = spec_sample[1].image[0].numpy()
    from screener.decide import decide_config
    from screener.infer import predict
    from screener.types import SeriesInfo, SeriesVolume

    pred = predict(SeriesVolume(img, spec_sample[1].affine, SeriesInfo("s", "s")), model, True)
    a, x = analyse_prediction(pred, img, spec_sample[1].affine, "s", decide_config(), v)
    assert score == pytest.approx(a.score)
    assert all(f.verifier_probability == f.score for f in a.findings)
    if a.findings:
        assert a.score == pytest.approx(float(v.probability(x).max()))

    (wdir / VERIFIER_FILE).write_text((wdir / VERIFIER_FILE).read_text().replace("1", "2", 1))
    with pytest.raises(WeightsError, match="verifier"):
        load_bundle(wdir)
    meta = json.loads(meta_path.read_text())
    meta["sha256"].pop(VERIFIER_FILE)
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="verifier"):  # there, but not recorded
        load_bundle(wdir)


def test_a_model_without_a_verifier_scores_as_before():
    from screener.decide import analyse_series, finding_score

    labels, fused, *_ , judged, affine = _scene()
    a = analyse_series(fused, judged, np.zeros(labels.shape), affine, "s", _faces())
    assert all(f.verifier_probability is None for f in a.findings)
    assert a.score == pytest.approx(max(finding_score(f.probability, f.volume_ml, 0.5)
                                        for f in a.findings))
    assert dataclasses.fields(Verifier)  # the stored form is a plain dataclass
