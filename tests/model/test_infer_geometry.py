"""Prediction comes back on the series' own grid: world positions survive the round trip."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from screener.infer import resample, working_grid


@pytest.mark.parametrize("angles,zooms", [((0, 0, 0), (1.0, 1.0, 1.0)),
                                          ((20, -15, 30), (0.9, 1.1, 4.0)),
                                          ((90, 0, 0), (0.5, 0.5, 3.0))])
def test_blob_centroid_survives_resampling(angles, zooms):
    rot = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag(zooms)
    aff[:3, 3] = [-40.0, -45.0, -30.0]
    shape = (90, 80, 24) if zooms[2] > 2 else (80, 90, 80)
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    world = ijk @ aff[:3, :3].T + aff[:3, 3]
    target = world.reshape(-1, 3).mean(0) + np.array([3.0, -2.0, 1.0])
    data = (np.linalg.norm(world - target, axis=-1) < 9.0).astype(np.float32)
    grid, gshape = working_grid(shape, aff, 2.0, 16)
    assert all(s % 16 == 0 for s in gshape)
    work = resample(data[None], aff, grid, gshape)[0]
    gi = np.stack(np.meshgrid(*[np.arange(s) for s in gshape], indexing="ij"), -1)
    gw = gi @ grid[:3, :3].T + grid[:3, 3]
    c_grid = (gw * work[..., None]).sum((0, 1, 2)) / work.sum()
    back = resample(work[None], grid, aff, shape)[0]
    c_back = (world * back[..., None]).sum((0, 1, 2)) / back.sum()
    c_true = (world * data[..., None]).sum((0, 1, 2)) / data.sum()
    assert np.linalg.norm(c_grid - c_true) < 1.0
    assert np.linalg.norm(c_back - c_true) < 1.0


@pytest.mark.parametrize("seed", range(4))
def test_separable_resampling_equals_monai_grid_sampling(seed):
    """Grids sharing axes (permuted, flipped, rescaled, shifted; samples partly outside) take the
    separable path; it must give MONAI SpatialResample's values. Oblique grids go to MONAI."""
    from screener.infer import _axis_permutation, _resample_monai

    rng = np.random.default_rng(seed)
    data = rng.random((2, 23, 31, 17)).astype(np.float32)
    src = np.zeros((4, 4))
    src[3, 3] = 1.0
    for i, ax in enumerate(rng.permutation(3)):
        src[ax, i] = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 3.0)
    src[:3, 3] = rng.uniform(-20.0, 20.0, 3)
    dst = np.diag(list(rng.uniform(0.7, 2.5, 3)) + [1.0])
    dst[:3, 3] = rng.uniform(-30.0, -10.0, 3)
    shape = (26, 40, 35)
    assert _axis_permutation(np.linalg.solve(src, dst), shape) is not None
    np.testing.assert_allclose(resample(data, src, dst, shape),
                               _resample_monai(data, src, dst, shape, "bilinear"), atol=1e-5)
    oblique = Rotation.from_euler("xyz", (4, 0, 0), degrees=True).as_matrix()
    tilted = src.copy()
    tilted[:3, :3] = oblique @ src[:3, :3]
    assert _axis_permutation(np.linalg.solve(tilted, dst), shape) is None
    np.testing.assert_array_equal(resample(data, tilted, dst, shape),
                                  _resample_monai(data, tilted, dst, shape, "bilinear"))


def _ball(shape, centre, radius):
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    return np.linalg.norm(idx - np.asarray(centre), axis=-1) <= radius


def test_brain_component_drops_an_eye_on_a_thin_nerve():
    from screener.infer import largest_component

    shape = (60, 60, 60)
    brain = _ball(shape, (30, 34, 30), 18)
    eye = _ball(shape, (30, 6, 30), 4)
    nerve = np.zeros(shape, bool)
    nerve[30, 9:17, 30] = True  # one voxel thick, joining eye and brain
    keep = largest_component(brain | eye | nerve, dilate=0) > 0
    assert not keep[eye].any()
    assert keep[brain].mean() > 0.99  # the brain keeps its outline
    # Without the nerve's thinness (a thick bridge) the eye would stay: the rule is about threads.
    bridge = np.zeros(shape, bool)
    bridge[26:35, 9:17, 26:35] = True
    assert (largest_component(brain | eye | bridge, dilate=0) > 0)[eye].all()


def test_head_box_covers_the_head_and_skips_the_air():
    from screener.infer import head_box

    shape = (96, 112, 96)
    x = np.random.default_rng(0).normal(0.0, 0.01, shape).clip(0, 1).astype(np.float32)
    head = _ball(shape, (40, 50, 45), 25)
    x[head] = 0.6
    box = head_box(x, 16)
    inside = np.zeros(shape, bool)
    inside[box] = True
    assert inside[head].all()
    assert all((s.stop - s.start) % 16 == 0 for s in box)
    assert inside.mean() < 0.6  # most of the air is not run through the network
    # An empty image keeps the whole grid (nothing to crop to).
    assert head_box(np.zeros(shape, np.float32), 16) == tuple(slice(0, n) for n in shape)


def _fake_model(roi, level=0.3):
    """A LoadedModel whose 'network' calls voxels above `level` WM and counts its windows."""
    import torch

    from screener.infer import LoadedModel, ModelConfig
    from screener.model.anatomy import N_CLASSES, Tissue

    class Net(torch.nn.Module):
        windows: list[tuple[int, ...]] = []

        def forward(self, x):
            Net.windows.append(tuple(x.shape[2:]))
            out = torch.zeros((x.shape[0], N_CLASSES) + tuple(x.shape[2:]))
            out[:, int(Tissue.WM)] = 10.0 * (x[:, 0] > level)
            out[:, int(Tissue.NONBRAIN)] = 10.0 * (x[:, 0] <= level)
            return out

    net = Net()
    model = LoadedModel(net=net, name="fake", version="0", weights_sha256="", device="cpu",
                        voxel_mm=2.0, metadata={}, weights_dir=None,
                        config=ModelConfig(roi_size=roi, use_outlier=False))
    return model, Net.windows


@pytest.mark.parametrize("roi", [(32, 32, 32), None])
def test_predict_tiles_or_one_window_and_diagnostics_on_request(roi):
    from screener.infer import predict
    from screener.types import SeriesInfo, SeriesVolume

    shape = (60, 70, 50)
    data = np.zeros(shape, np.float32)
    data[_ball(shape, (30, 35, 25), 20)] = 100.0
    vol = SeriesVolume(data=data, affine=np.diag([1.5, 1.5, 1.5, 1.0]), info=SeriesInfo("s", "s"))
    model, windows = _fake_model(roi)
    pred = predict(vol, model)
    assert pred.brain_prob.shape == shape and pred.learned_prob is None and pred.tissue is None
    assert pred.brain_prob[30, 35, 25] > 0.99 and pred.brain_prob[2, 2, 2] < 0.01
    n = len(windows)
    assert (n == 1) if roi is None else (n > 1 and all(w == roi for w in windows))
    full = predict(vol, model, diagnostics=True)
    assert full.learned_prob.shape == full.tissue.shape == full.outlier_z.shape == shape
    np.testing.assert_allclose(full.brain_prob, pred.brain_prob)


def test_brain_on_the_head_box_edge_is_measured():
    """Brain reaching the edge of the analysed head box (inside the grid) is brain the network
    never saw: predict measures it (the next test: the screen then refuses the series)."""
    from screener.infer import predict
    from screener.types import SeriesInfo, SeriesVolume

    shape = (120, 120, 120)
    data = np.zeros(shape, np.float32)
    data[_ball(shape, (60, 60, 60), 15)] = 100.0
    vol = SeriesVolume(data=data, affine=np.diag([1.0, 1.0, 1.0, 1.0]), info=SeriesInfo("s", "s"))
    assert predict(vol, _fake_model((32, 32, 32))[0]).brain_at_box_edge_cm2 == 0.0
    everywhere, _ = _fake_model((32, 32, 32), level=-1.0)  # "brain" fills the whole box
    assert predict(vol, everywhere).brain_at_box_edge_cm2 > 10.0


def test_series_whose_brain_leaves_the_head_box_is_not_used(monkeypatch):
    import screener.infer
    import screener.io
    from screener.config import load_config
    from screener.infer import Prediction
    from screener.pipeline import SeriesResult, _analyse
    from screener.types import SeriesInfo, SeriesVolume

    shape = (90, 100, 90)
    brain = _ball(shape, (45, 50, 45), 40).astype(np.float32)  # ~1.1 l at 1.5 mm
    vol = SeriesVolume(data=100.0 * brain + 10.0, affine=np.diag([1.5, 1.5, 1.5, 1.0]),
                       info=SeriesInfo("s", "s"))
    monkeypatch.setattr(screener.io, "load_series", lambda info, config: vol)
    for edge, used in ((0.0, True), (50.0, False)):
        pred = Prediction(brain_prob=brain, lesion_prob=np.zeros(shape, np.float32),
                          brain_at_box_edge_cm2=edge)
        monkeypatch.setattr(screener.infer, "predict", lambda v, m, diagnostics=False, p=pred: p)
        r = SeriesResult(info=vol.info, used=True)
        _analyse(r, None, load_config(), {})
        assert r.used is used, r.why_not_used
        assert used or any("analysed" in w and w.startswith("brain_cut_off") for w in r.why_not_used)


def test_mirror_tta_maps_back_onto_the_unmirrored_voxels():
    """A voxel-wise network commutes with mirroring, so averaging over the mirror image must
    change nothing; a wrong flip back (axis or none) would move the asymmetric maps."""
    import dataclasses
    from pathlib import Path

    import torch

    from screener.infer import LoadedModel, ModelConfig, predict
    from screener.model.anatomy import N_CLASSES
    from screener.types import SeriesInfo, SeriesVolume

    torch.manual_seed(0)
    net = torch.nn.Conv3d(1, N_CLASSES, 1).eval()
    with torch.no_grad():
        net.weight.mul_(8.0)
    shape = (70, 60, 50)
    head = _ball(shape, (30, 28, 24), 20)
    ii = np.arange(shape[0])[:, None, None] * np.ones(shape)
    data = (head * (0.3 + ii / 70.0) + 0.5 * _ball(shape, (20, 30, 20), 5)).astype(np.float32)
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = [-60.0, -50.0, -40.0]
    volume = SeriesVolume(data=data, affine=aff, info=SeriesInfo("s", "s"))
    base = LoadedModel(net=net, name="t", version="0", weights_sha256="", device="cpu",
                       voxel_mm=2.0, metadata={}, weights_dir=Path("."),
                       config=ModelConfig(roi_size=(32, 32, 32), use_outlier=False))
    plain = predict(volume, base)
    mirrored = predict(volume, dataclasses.replace(
        base, config=dataclasses.replace(base.config, tta_flip=True)))
    assert plain.lesion_prob.std() > 0.01  # the check has something to move
    np.testing.assert_allclose(mirrored.lesion_prob, plain.lesion_prob, atol=1e-5)
    np.testing.assert_allclose(mirrored.brain_prob, plain.brain_prob, atol=1e-5)


def test_grid_offsets_average_the_predictions_of_the_shifted_grids():
    """model.grid_offsets_mm: the maps are the mean of one prediction per shifted working grid,
    each of which moves the grid (not the world: a blob stays where it is)."""
    import dataclasses
    from pathlib import Path

    import torch

    from screener.infer import LoadedModel, ModelConfig, predict
    from screener.model.anatomy import N_CLASSES
    from screener.types import SeriesInfo, SeriesVolume

    torch.manual_seed(0)
    net = torch.nn.Conv3d(1, N_CLASSES, 1).eval()
    with torch.no_grad():
        net.weight.mul_(8.0)
    shape = (60, 60, 50)
    data = (_ball(shape, (30, 28, 24), 20) * 0.5 + 0.5 * _ball(shape, (22, 30, 20), 6)
            ).astype(np.float32)
    aff = np.diag([1.3, 1.3, 1.5, 1.0])  # not a multiple of the 2 mm grid: shifts matter
    aff[:3, 3] = [-40.0, -38.0, -36.0]
    volume = SeriesVolume(data=data, affine=aff, info=SeriesInfo("s", "s"))
    base = LoadedModel(net=net, name="t", version="0", weights_sha256="", device="cpu",
                       voxel_mm=2.0, metadata={}, weights_dir=Path("."),
                       config=ModelConfig(roi_size=(32, 32, 32), use_outlier=False))

    def with_offsets(*offsets):
        return predict(volume, dataclasses.replace(base, config=dataclasses.replace(
            base.config, grid_offsets_mm=offsets)))

    plain, zero = predict(volume, base), with_offsets((0.0, 0.0, 0.0))
    np.testing.assert_array_equal(zero.lesion_prob, plain.lesion_prob)
    moved = with_offsets((1.0, 1.0, 1.0))
    assert np.abs(moved.lesion_prob - plain.lesion_prob).max() > 0.01  # the grid did move
    both = with_offsets((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    np.testing.assert_allclose(both.lesion_prob, (plain.lesion_prob + moved.lesion_prob) / 2,
                               atol=1e-6)
    np.testing.assert_allclose(both.brain_prob, (plain.brain_prob + moved.brain_prob) / 2,
                               atol=1e-6)
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    world = ijk @ aff[:3, :3].T + aff[:3, 3]
    centre = [(world * p.lesion_prob[..., None]).sum((0, 1, 2)) / p.lesion_prob.sum()
              for p in (plain, moved)]
    assert np.linalg.norm(centre[0] - centre[1]) < 0.5  # world positions unchanged
    for bad in ((), ((0.0, 1.0),), ((0.0, float("nan"), 0.0),)):
        with pytest.raises(ValueError):
            ModelConfig(grid_offsets_mm=bad)


def _ball_with_notch(notch_half_width_vox: int) -> np.ndarray:
    """A 2 mm-grid 'brain' ball (radius 20 voxels) with a slot cut in from its surface."""
    brain = _ball((48, 48, 48), (24, 24, 24), 20)
    x, y, z = np.meshgrid(*[np.arange(48) - 24] * 3, indexing="ij")
    slot = (x > 8) & (np.abs(y) <= notch_half_width_vox) & (np.abs(z) <= 6)
    return brain & ~slot


def test_brain_hull_closes_narrow_surface_slots_only():
    from screener.infer import brain_hull

    narrow = _ball_with_notch(1)  # 3 voxels = 6 mm wide
    hull = brain_hull(narrow, 6.0, 2.0)
    assert hull[34:42, 24, 24].all() and not narrow[34:42, 24, 24].any()
    wide = _ball_with_notch(6)  # 13 voxels = 26 mm wide: not a sulcus, stays open
    assert not brain_hull(wide, 6.0, 2.0)[36:40, 24, 24].any()
    # nothing of the brain itself is lost, also where it touches the grid's edge
    edge = np.zeros((20, 20, 20), bool)
    edge[:, :10, :] = True
    assert brain_hull(edge, 6.0, 2.0)[edge].all()


def test_assessment_mask_is_the_brain_unless_the_model_judges_the_hull():
    from screener.infer import Prediction, assessment_mask

    brain = np.zeros((4, 4, 4), np.float32)
    brain[1:3, 1:3, 1:3] = 0.9
    pred = Prediction(brain_prob=brain, lesion_prob=np.zeros_like(brain))
    assert (assessment_mask(pred, 0.5) == (brain >= 0.5)).all()
    pred.assess_prob = np.maximum(brain, 0.0)
    pred.assess_prob[0, 0, 0] = 1.0
    mask = assessment_mask(pred, 0.5)
    assert mask[0, 0, 0] and mask[brain >= 0.5].all()


def test_hull_region_takes_thick_abnormal_blobs_off_the_brain_not_thin_sheets():
    from screener.infer import hull_region

    shape = (30, 30, 30)
    brain = np.zeros(shape, np.float32)
    brain[5:25, 5:25, 5:15] = 1.0
    judged = np.zeros(shape, np.float32)
    judged[5:25, 5:25, 5:25] = 1.0  # the hull reaches 10 voxels beyond the brain
    lesion = np.zeros(shape, np.float32)
    lesion[8:11, 8:11, 15:19] = 0.9  # a blob 3+ voxels thick in the hull (lesion read as CSF)
    lesion[15:25, 20, 15:24] = 0.9  # a one-voxel sheet (sulcal partial volume)
    lesion[8:11, 8:11, 26:29] = 0.9  # a blob outside the hull
    region = hull_region(brain, judged, lesion, 1) >= 0.5
    assert region[brain >= 0.5].all()
    assert region[8:11, 8:11, 15:19].all()
    assert not region[15:25, 20, 15:24].any()
    assert not region[8:11, 8:11, 26:29].any()
    assert region.sum() == (brain >= 0.5).sum() + 36
    # without the opening the sheet counts too
    assert (hull_region(brain, judged, lesion, 0) >= 0.5)[15:25, 20, 15:24].all()


def test_learned_logit_offset_lowers_only_the_learned_channels_threshold():
    """model.learned_logit_offset: the fused map is rebuilt with the learned channel's logit
    raised (what benchmarks/inference_settings.py --learned-offsets scores), the outlier term
    and the diagnostics' learned_prob unchanged; zero stays zero."""
    import dataclasses

    import torch

    from screener.infer import predict, raise_logit
    from screener.model.anatomy import N_CLASSES, Tissue
    from screener.types import SeriesInfo, SeriesVolume

    p = np.array([0.0, 1e-6, 0.047, 0.5, 0.9], np.float32)
    up = raise_logit(p, 3.0)
    assert up[0] == 0.0 and np.all(np.diff(up) > 0) and np.all(up[1:] > p[1:])
    assert abs(float(raise_logit(np.float32([1 / (1 + np.exp(3.0))]), 3.0)[0]) - 0.5) < 1e-5
    assert raise_logit(p, 0.0) is p

    class Net(torch.nn.Module):  # WM in the head, a faint lesion logit (p ~ 0.1) on the bright blob
        def forward(self, x):
            out = torch.zeros((x.shape[0], N_CLASSES) + tuple(x.shape[2:]))
            inside = x[:, 0] > 0.3
            out[:, int(Tissue.WM)] = 10.0 * inside
            out[:, int(Tissue.NONBRAIN)] = 10.0 * ~inside
            out[:, int(Tissue.LESION)] = torch.where(x[:, 0] > 0.9, 7.8, -20.0)
            return out

    shape = (60, 70, 50)
    data = np.zeros(shape, np.float32)
    data[_ball(shape, (30, 35, 25), 20)] = 100.0
    data[_ball(shape, (30, 35, 25), 5)] = 130.0
    data += np.random.default_rng(0).normal(0, 1.0, shape).astype(np.float32)
    vol = SeriesVolume(data=data, affine=np.diag([2.0, 2.0, 2.0, 1.0]), info=SeriesInfo("s", "s"))
    model, _ = _fake_model((32, 32, 32))
    model = dataclasses.replace(model, net=Net(), config=dataclasses.replace(model.config, use_outlier=True))
    plain = predict(vol, model, diagnostics=True)
    raised = predict(vol, dataclasses.replace(
        model, config=dataclasses.replace(model.config, learned_logit_offset=3.0)), diagnostics=True)
    np.testing.assert_allclose(raised.learned_prob, plain.learned_prob)
    top = np.unravel_index(int(plain.learned_prob.argmax()), shape)
    assert 0.05 < plain.learned_prob[top] < 0.2
    assert plain.lesion_prob[top] < 0.5 < raised.lesion_prob[top]
    l = np.clip(plain.learned_prob.astype(np.float64), 1e-7, 1 - 1e-7)
    q = np.clip(1 - (1 - plain.lesion_prob) / (1 - l), 0, 1)
    want = 1 - (1 - raise_logit(plain.learned_prob, 3.0)) * (1 - q)
    np.testing.assert_allclose(raised.lesion_prob, want, atol=2e-3)


def test_outlier_rim_keeps_the_outlier_term_off_the_brains_outermost_voxels():
    """model.outlier_rim_vox: a bright shell on the brain's surface (partial volume with what
    lies outside) leaves the fused map; a bright blob inside is still found."""
    import dataclasses

    from screener.infer import predict
    from screener.types import SeriesInfo, SeriesVolume

    shape = (60, 70, 50)
    centre = (30, 35, 25)
    data = np.zeros(shape, np.float32)
    data[_ball(shape, centre, 20)] = 100.0
    shell = _ball(shape, centre, 20) & ~_ball(shape, centre, 19)
    data[shell] = 140.0
    blob = _ball(shape, centre, 4)
    data[blob] = 140.0
    data += np.random.default_rng(0).normal(0, 1.0, shape).astype(np.float32)
    vol = SeriesVolume(data=data, affine=np.diag([2.0, 2.0, 2.0, 1.0]), info=SeriesInfo("s", "s"))
    model, _ = _fake_model((32, 32, 32))
    model = dataclasses.replace(model, config=dataclasses.replace(model.config, use_outlier=True))
    plain = predict(vol, model)
    rim = predict(vol, dataclasses.replace(
        model, config=dataclasses.replace(model.config, outlier_rim_vox=2)))
    assert (plain.lesion_prob[shell] >= 0.5).mean() > 0.5
    assert (rim.lesion_prob[shell] >= 0.5).mean() < 0.2
    assert (plain.lesion_prob[blob] >= 0.5).mean() > 0.9
    assert (rim.lesion_prob[blob] >= 0.5).mean() > 0.9
    np.testing.assert_allclose(rim.brain_prob, plain.brain_prob)


def test_outlier_rim_opening_judges_thick_regions_at_the_surface():
    """model.outlier_rim_opening_vox: in the rim, a region of the outlier term at least 3 voxels
    thick (a lesion at the cortex) still counts; the one-voxel shell of partial volume does not."""
    import dataclasses

    from screener.infer import predict
    from screener.types import SeriesInfo, SeriesVolume

    shape = (60, 70, 50)
    centre = (30, 35, 25)
    head = _ball(shape, centre, 20)
    data = np.zeros(shape, np.float32)
    data[head] = 100.0
    shell = head & ~_ball(shape, centre, 19)
    data[shell] = 140.0
    surface_lesion = _ball(shape, (30, 35 + 17, 25), 5) & head  # reaches the brain's surface
    data[surface_lesion] = 140.0
    data += np.random.default_rng(0).normal(0, 1.0, shape).astype(np.float32)
    vol = SeriesVolume(data=data, affine=np.diag([2.0, 2.0, 2.0, 1.0]), info=SeriesInfo("s", "s"))
    model, _ = _fake_model((32, 32, 32))
    cfg = dataclasses.replace(model.config, use_outlier=True, outlier_rim_vox=2)
    rim = predict(vol, dataclasses.replace(model, config=cfg))
    opened = predict(vol, dataclasses.replace(
        model, config=dataclasses.replace(cfg, outlier_rim_opening_vox=1)))
    outer = surface_lesion & shell  # the lesion's voxels in the outermost layer
    assert outer.sum() > 10
    assert (rim.lesion_prob[outer] >= 0.5).mean() < 0.2
    assert (opened.lesion_prob[outer] >= 0.5).mean() > 0.8
    away = shell & ~_ball(shape, (30, 35 + 17, 25), 9)  # the shell away from the lesion
    assert (opened.lesion_prob[away] >= 0.5).mean() < 0.2


def test_inference_settings_writes_one_row_per_head(tmp_path):
    """benchmarks/inference_settings.py --cases-csv: a row per head in the order drawn, the study
    score gated by the hit on lesion heads (a missed lesion scores 0, as in the AUROC)."""
    import csv
    import importlib.util
    from types import SimpleNamespace

    from screener.config import REPO_ROOT

    spec = importlib.util.spec_from_file_location(
        "inference_settings", REPO_ROOT / "benchmarks" / "inference_settings.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    heads = [SimpleNamespace(lesion=True, kind="infarct", contrast="T1"),
             SimpleNamespace(lesion=True, kind="mass", contrast="T2"),
             SimpleNamespace(lesion=False, kind=None, contrast="FLAIR")]
    samples = [(h, None) for h in heads]
    rows = {"fused": [(True, True, [(0.99, 3.0)]), (True, False, [(0.9, 5.0)]),
                      (False, False, [(0.8, 1.0)])],
            "learned": [(True, False, [(0.4, 0.1)]), (True, False, []), (False, False, [])]}
    out = tmp_path / "cases.csv"
    mod._write_cases(str(out), samples, rows)
    got = list(csv.DictReader(out.open()))
    assert [r["head"] for r in got] == ["0", "1", "2"]
    assert [r["fused_hit"] for r in got] == ["1", "0", "0"]
    assert float(got[0]["fused_score_0.5ml"]) > 0.5
    assert float(got[1]["fused_score_0.5ml"]) == 0.0  # a miss scores 0 whatever it painted
    assert float(got[2]["fused_score_0.5ml"]) > 0.0   # a lesion-free head keeps its false finding
    assert got[2]["kind"] == "" and got[0]["contrast"] == "T1"
    assert float(got[0]["learned_score_0.5ml"]) == 0.0


def test_cpu_bf16_setting_is_checked_and_yaml_booleans_are_read():
    from screener.infer import cpu_bf16_enabled

    assert cpu_bf16_enabled("on") and cpu_bf16_enabled(True)
    assert not cpu_bf16_enabled("off") and not cpu_bf16_enabled(False)
    assert isinstance(cpu_bf16_enabled("auto"), bool)
    with pytest.raises(ValueError, match="cpu_bf16"):
        cpu_bf16_enabled("fast")
    from screener.infer import ModelConfig, load_model

    with pytest.raises(ValueError, match="cpu_bf16"):  # before any study is read
        load_model(ModelConfig(cpu_bf16="fast"), "cpu")


def test_cpu_bf16_runs_the_network_under_autocast_and_blends_in_float32():
    import dataclasses

    import torch

    from screener.infer import predict
    from screener.types import SeriesInfo, SeriesVolume

    shape = (60, 70, 50)
    data = np.zeros(shape, np.float32)
    data[_ball(shape, (30, 35, 25), 20)] = 100.0
    vol = SeriesVolume(data=data, affine=np.diag([1.5, 1.5, 1.5, 1.0]), info=SeriesInfo("s", "s"))
    model, _ = _fake_model((32, 32, 32))
    seen: list[bool] = []  # autocast on, per network call
    inner = model.net.forward

    def forward(x):
        seen.append(torch.is_autocast_enabled("cpu"))
        return inner(x)

    model.net.forward = forward

    def run(setting: str):
        return predict(vol, dataclasses.replace(
            model, config=dataclasses.replace(model.config, cpu_bf16=setting)))

    plain = run("off")
    assert seen and not any(seen)
    seen.clear()
    half = run("on")
    assert seen and all(seen)
    assert half.brain_prob.dtype == plain.brain_prob.dtype
    assert np.abs(half.brain_prob - plain.brain_prob).max() < 0.05
