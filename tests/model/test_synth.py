"""The synthetic generator: deterministic, every lesion kind has a mask, fixed specs honoured."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from screener.model.anatomy import Tissue, load_all
from screener.model.lesions import KINDS
from screener.model.synth import SampleSpec, SynthConfig, SynthGenerator, degrade_slices


@pytest.fixture(scope="module")
def gen():
    from testpaths import shared_path

    torch.set_num_threads(1)
    folder = shared_path("synth-label-maps")
    cfg = SynthConfig(label_maps_dir=str(folder), max_label_maps=2, grid_shape=(64, 72, 64))
    return SynthGenerator(cfg, load_all(folder, 2))


def test_same_seed_same_sample(gen):
    a, b = gen.sample(7), gen.sample(7)
    assert torch.equal(a.image, b.image) and torch.equal(a.target, b.target)
    c = gen.sample(8)
    assert not torch.equal(a.image, c.image)


def test_image_normalised_and_anatomy_present(gen):
    s = gen.sample(3, SampleSpec(lesion=False, contrast="T1"))
    assert s.image.shape == (1, 64, 72, 64) and s.image.dtype == torch.float32
    assert 0.0 <= float(s.image.min()) and float(s.image.max()) <= 1.0
    classes = set(torch.unique(s.target).tolist())
    assert {Tissue.NONBRAIN, Tissue.WM, Tissue.GM, Tissue.VENTRICLE} <= classes
    assert Tissue.LESION not in classes and not s.lesions


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_makes_a_visible_lesion(gen, kind):
    s = gen.sample(11, SampleSpec(lesion=True, kind=kind, diameter_mm=20.0, contrast="FLAIR",
                                  slice_thickness_mm=2.0, n_lesions=1))
    mask = s.lesion_mask
    assert mask.any(), kind
    assert s.lesions[0].kind == kind
    # the lesion differs from the same tissue elsewhere: mean |intensity - WM median| is larger
    wm = s.image[0][s.target == Tissue.WM]
    les = s.image[0][mask]
    assert float((les - wm.median()).abs().mean()) > 0.02
    # 20 mm at 2 mm voxels: between a small fraction and ~3x the nominal sphere volume
    vol_ml = float(mask.sum()) * 8 / 1000
    assert 0.3 < vol_ml < 3 * (4 / 3 * np.pi * 10**3) / 1000 * 3


def test_thick_slices_blur_along_one_axis():
    img = torch.zeros(32, 32, 32)
    img[:, :, 16] = 1.0
    out = degrade_slices(img, 2, thickness_mm=6.0, voxel_mm=2.0)
    assert out[:, :, 16].mean() < 0.9 and out[:, :, 14].mean() > 0.01
    assert torch.allclose(out.sum(dim=2), img.sum(dim=2), atol=0.35)


def test_tissue_mimic_gives_white_matter_lesions_grey_matter_signal(gen):
    import dataclasses

    from scipy import ndimage

    spec = SampleSpec(lesion=True, kind="oedema", diameter_mm=24.0, contrast="T1",
                      slice_thickness_mm=2.0, n_lesions=1)
    mimic = SynthGenerator(dataclasses.replace(gen.cfg, p_tissue_mimic=1.0), gen.maps)
    off = SynthGenerator(dataclasses.replace(gen.cfg, p_tissue_mimic=0.0), gen.maps)
    for seed in (11, 12, 13):
        s = mimic.sample(seed, spec)
        img, t = s.image[0], s.target
        core = torch.from_numpy(ndimage.binary_erosion(s.lesion_mask.numpy(), iterations=2))
        les = float(img[core].median())  # the core: border voxels carry part of the change
        wm, gm = float(img[t == Tissue.WM].median()), float(img[t == Tissue.GM].median())
        assert abs(les - gm) < abs(les - wm), (seed, les, gm, wm)
        # 0 draws no random number: the default generator's sample is reproduced exactly
        assert torch.equal(off.sample(seed, spec).image, gen.sample(seed, spec).image)


def test_contrast_weights_steer_template_draws_and_default_reproduces(gen):
    import dataclasses
    from collections import Counter

    from screener.model.synth import CONTRASTS, held_out_config

    base = dataclasses.replace(gen.cfg, p_random_contrast=0.0)
    t1 = SynthGenerator(dataclasses.replace(base, contrast_weights=(1, 0, 0, 0, 0)), gen.maps)
    assert {t1.sample(seed, SampleSpec(lesion=False)).contrast for seed in range(6)} == {"T1"}
    # empty weights: the draws of the generator before the option existed (uniform integers)
    uniform = SynthGenerator(base, gen.maps)
    seen = Counter(uniform.sample(seed, SampleSpec(lesion=False)).contrast for seed in range(10))
    assert set(seen) <= set(CONTRASTS) and len(seen) >= 3
    same = SynthGenerator(dataclasses.replace(base, contrast_weights=()), gen.maps)
    assert torch.equal(same.sample(5).image, uniform.sample(5).image)
    # held-out heads never carry the training emphasis
    assert held_out_config(dataclasses.replace(base, contrast_weights=(3, 1, 1, 1, 1))
                           ).contrast_weights == ()
    with pytest.raises(ValueError, match="contrast_weights"):
        SynthGenerator(dataclasses.replace(base, contrast_weights=(1, 1)), gen.maps).sample(
            0, SampleSpec(lesion=False))


def test_large_lesions_are_drawn_only_when_asked_and_never_held_out(gen):
    """synth.p_large_lesion: masses/oedemas of random size drawn from large_lesion_mm; at 0 the
    draws are those of before the option; sizes fixed by a spec are kept; held-out heads never."""
    import dataclasses

    from screener.model.synth import held_out_config

    big = SynthGenerator(dataclasses.replace(gen.cfg, p_large_lesion=1.0,
                                             large_lesion_mm=(60.0, 70.0)), gen.maps)
    seeds = [s for s in range(40) if big.sample(s, SampleSpec(kind="mass", n_lesions=1)).lesions][:3]
    assert seeds
    for s in seeds:
        (les,) = big.sample(s, SampleSpec(kind="mass", n_lesions=1)).lesions
        assert 60.0 <= les.diameter_mm <= 70.0
    fixed = big.sample(seeds[0], SampleSpec(kind="oedema", diameter_mm=20.0, n_lesions=1))
    assert all(les.diameter_mm == 20.0 for les in fixed.lesions)
    off = SynthGenerator(dataclasses.replace(gen.cfg, p_large_lesion=0.0), gen.maps)
    a, b = off.sample(11), gen.sample(11)
    assert torch.equal(a.image, b.image) and torch.equal(a.target, b.target)
    assert held_out_config(big.cfg).p_large_lesion == 0.0


def test_extra_lesions_are_training_only_and_off_reproduces(gen):
    """synth.extra_lesions: training lesion heads carry more lesions; (0, 0) keeps the draws of
    before the option; heads fixed by a spec (benchmark, calibration) and held-out heads never."""
    import dataclasses

    from screener.model.synth import held_out_config

    many = SynthGenerator(dataclasses.replace(gen.cfg, extra_lesions=(3, 3)), gen.maps)
    seeds = [s for s in range(30) if gen.sample(s).lesions][:6]
    assert len(seeds) >= 4
    before = [len(gen.sample(s).lesions) for s in seeds]
    after = [len(many.sample(s).lesions) for s in seeds]
    assert np.mean(after) >= np.mean(before) + 2.0, (before, after)
    spec = SampleSpec(kind="mass", diameter_mm=20.0, n_lesions=1)
    assert len(many.sample(seeds[0], spec).lesions) <= 1
    assert len(many.sample(seeds[0], SampleSpec(kind="infarct")).lesions) <= 1
    off = SynthGenerator(dataclasses.replace(gen.cfg, extra_lesions=(0, 0)), gen.maps)
    a, b = off.sample(seeds[0]), gen.sample(seeds[0])
    assert torch.equal(a.image, b.image) and torch.equal(a.target, b.target)
    assert held_out_config(many.cfg).extra_lesions == (0, 0)


def test_flair_grey_white_ratio_is_training_only_and_default_reproduces(gen):
    """synth.flair_gm_ratio: FLAIR heads draw grey matter at white matter's mean times a ratio in
    the range (real FLAIR: grey matter about 0-20 % above white); empty keeps the template's
    draws exactly; other contrasts are untouched; held-out heads never use it."""
    import dataclasses

    import numpy as np

    from screener.model.anatomy import Tissue
    from screener.model.synth import held_out_config

    near = SynthGenerator(dataclasses.replace(gen.cfg, flair_gm_ratio=(1.0, 1.05),
                                              max_bias=0.0), gen.maps)
    far = SynthGenerator(dataclasses.replace(gen.cfg, max_bias=0.0), gen.maps)

    def gm_over_wm(g, seed, contrast):
        s = g.sample(seed, SampleSpec(lesion=False, contrast=contrast, slice_thickness_mm=2.0))
        img, t = s.image[0].numpy(), s.target.numpy()
        return float(np.median(img[t == int(Tissue.GM)]) / np.median(img[t == int(Tissue.WM)]))

    ratios_near = [gm_over_wm(near, s, "FLAIR") for s in range(3)]
    ratios_far = [gm_over_wm(far, s, "FLAIR") for s in range(3)]
    # (the template's jitter can put a single head's grey matter below white: compare the means)
    assert np.mean(ratios_near) + 0.08 < np.mean(ratios_far), (ratios_near, ratios_far)
    assert max(ratios_near) < 1.1
    t2 = SampleSpec(lesion=False, contrast="T2", slice_thickness_mm=2.0)
    assert torch.equal(near.sample(5, t2).image, far.sample(5, t2).image)
    off = SynthGenerator(dataclasses.replace(gen.cfg, flair_gm_ratio=()), gen.maps)
    a, b = off.sample(11), gen.sample(11)
    assert torch.equal(a.image, b.image) and torch.equal(a.target, b.target)
    assert held_out_config(near.cfg).flair_gm_ratio == ()
    with pytest.raises(ValueError, match="flair_gm_ratio"):
        SynthGenerator(dataclasses.replace(gen.cfg, flair_gm_ratio=(1.0,)), gen.maps).sample(
            0, SampleSpec(lesion=False, contrast="FLAIR"))


def test_demyelination_plan_measures_ventricle_distance_once(monkeypatch):
    # The distance to the ventricles is the same for every lesion of a head; it used to be
    # recomputed per demyelination lesion (up to 8 per head; about 15 % of the generator's time).
    from scipy import ndimage

    from screener.model.lesions import plan_lesions

    calls = []
    real = ndimage.distance_transform_edt
    monkeypatch.setattr(ndimage, "distance_transform_edt",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    z, y, x = np.mgrid[:40, :40, :40] - 19.5
    r = np.sqrt(x * x + y * y + z * z)
    tissue = np.full((40, 40, 40), int(Tissue.NONBRAIN), np.int64)
    tissue[r < 17] = int(Tissue.GM)
    tissue[r < 14] = int(Tissue.WM)
    tissue[r < 4] = int(Tissue.VENTRICLE)
    spec = SampleSpec(kind="demyelination", n_lesions=5)
    plans = plan_lesions(np.random.default_rng(0), torch.from_numpy(tissue), 2.0, spec)
    assert len(plans) == 5 and all(p.kind == "demyelination" for p in plans)
    assert len(calls) == 1


def test_label_maps_share_one_index_of_exactly_the_labels_present(gen):
    """load_all's label list is np.unique over the maps (found without sorting the voxels) and
    each map's index names its own labels by position in that list."""
    import nibabel as nib

    from screener.model.anatomy import find_label_maps
    from testpaths import shared_path

    raw = [np.asarray(nib.as_closest_canonical(nib.load(str(p))).dataobj).astype(np.int32)
           for p in find_label_maps(shared_path("synth-label-maps"))[:2]]
    labels = np.unique(np.concatenate([np.unique(r) for r in raw]))
    assert np.array_equal(gen.maps[0].labels, labels)
    for m, r in zip(gen.maps, raw):
        assert np.array_equal(m.labels[m.index.astype(np.int64)], r)


def test_lesion_amplitude_floor_is_training_only_and_default_reproduces(gen):
    """synth.lesion_amplitude_min: every painted step (not a tissue mimic) is at least the floor;
    the default 0.07 keeps the draws of before the option; held-out heads never take it."""
    import dataclasses

    from screener.model import lesions as lesion_lib
    from screener.model.synth import held_out_config

    tissue = torch.full((24, 24, 24), int(Tissue.WM), dtype=torch.long)
    img = torch.full((24, 24, 24), 0.5)

    def peak_steps(floor: float) -> list[float]:
        steps = []
        for seed in range(40):
            rng = np.random.default_rng(seed)
            spec = lesion_lib.LesionSpec(kind="demyelination", centre_vox=np.array([12.0, 12.0, 12.0]),
                                         diameter_mm=14.0, radii_scale=np.ones(3), rotation=np.eye(3))
            out, mask = lesion_lib.render_lesions(img, tissue, [spec], rng,
                                                  torch.Generator().manual_seed(seed),
                                                  tissue_means=(0.5, 0.4, 0.9), contrast="T2",
                                                  amplitude_min=floor)
            assert mask.any()
            steps.append(float((out - img).abs().max()))
        return steps

    default, floored = peak_steps(0.07), peak_steps(0.15)
    assert min(floored) >= 0.14 and min(default) < 0.14, (min(default), min(floored))
    with pytest.raises(ValueError, match="amplitude_min"):
        peak_steps(0.0)
    off = SynthGenerator(dataclasses.replace(gen.cfg, lesion_amplitude_min=0.07), gen.maps)
    seed = next(s for s in range(30) if gen.sample(s).lesions)
    a, b = off.sample(seed), gen.sample(seed)
    assert torch.equal(a.image, b.image) and torch.equal(a.target, b.target)
    clear = SynthGenerator(dataclasses.replace(gen.cfg, lesion_amplitude_min=0.15), gen.maps)
    assert not torch.equal(clear.sample(seed).image, a.image)
    assert held_out_config(clear.cfg).lesion_amplitude_min == 0.07


def test_label_supersampling_averages_labels_within_the_voxel_and_keeps_the_draws(gen):
    """synth.label_supersample: k = 1 is the centre sample exactly; k = 2 renders each voxel
    as the mean of its sub-voxel label intensities (a border voxel mixes its tissues), with the
    same anatomy, target and later draws."""
    import dataclasses

    rng = np.random.default_rng(0)
    pts, _ = gen._sampling_points(rng, torch.Generator().manual_seed(0), gen._centres[0])
    labels = gen._sample_labels(0, pts)
    mu = rng.uniform(0.0, 1.0, len(gen.maps[0].labels))
    sd = np.full_like(mu, 0.01)
    one, _ = gen._supersampled_means(0, pts, mu, sd, 1)
    assert torch.allclose(one, torch.from_numpy(mu).float()[labels])
    two, spread = gen._supersampled_means(0, pts, mu, sd, 2)
    assert torch.allclose(spread, torch.full_like(spread, 0.01))
    mixed = (two - one).abs() > 1e-4  # voxels whose sub-voxel points see another label
    brain = labels > 0
    assert 0.05 < float(mixed[brain].float().mean()) < 0.9
    assert float(two.min()) >= mu.min() - 1e-6 and float(two.max()) <= mu.max() + 1e-6

    smooth = SynthGenerator(dataclasses.replace(gen.cfg, label_supersample=2), gen.maps)
    spec = SampleSpec(lesion=True, kind="oedema", diameter_mm=20.0, slice_thickness_mm=2.0,
                      contrast="T2")
    a, b = gen.sample(5, spec), smooth.sample(5, spec)
    assert torch.equal(a.target, b.target) and a.contrast == b.contrast
    assert not torch.equal(a.image, b.image)
    assert float((a.image - b.image).abs().mean()) < 0.05


def test_judged_heads_take_synth_overrides_checked_by_type():
    """synth_eval._generator(overrides=...) (inference_settings.py --synth) replaces only the
    named SynthConfig fields of the weights' training config; unknown keys and wrong types fail."""
    import dataclasses
    import json

    from screener.config import ConfigError, from_mapping, repo_path
    from screener.model import synth_eval
    from screener.model.synth import held_out_config

    meta = json.loads(repo_path("weights/screener-synth-v1/configs/metadata.json").read_text())
    plain = held_out_config(from_mapping(SynthConfig, meta["training"]["config"]["synth"]))
    gen2, _ = synth_eval._generator(meta, overrides={"label_supersample": 2})
    assert plain.label_supersample == 1 and gen2.cfg.label_supersample == 2
    assert dataclasses.replace(plain, label_supersample=2) == gen2.cfg  # nothing else replaced
    with pytest.raises(ConfigError):
        synth_eval._generator(meta, overrides={"no_such_field": 1})
    with pytest.raises(ConfigError):
        synth_eval._generator(meta, overrides={"label_supersample": "two"})


def test_brainstem_fraction_is_training_only_and_default_reproduces(gen):
    """synth.brainstem_fraction: the brain stem's signal moves into [low, high] of the way from
    grey to white matter, by the same draw (every other label's mean unchanged); empty keeps the
    old draws; held-out heads never take it."""
    import dataclasses

    from screener.model.synth import BRAINSTEM_LABEL, held_out_config

    m = gen.maps[0]
    stem = int(np.flatnonzero(m.labels == BRAINSTEM_LABEL)[0])
    bright = SynthGenerator(dataclasses.replace(gen.cfg, brainstem_fraction=(0.6, 1.0)), gen.maps)
    for seed in range(20):
        mu_old, _, (wm, gm, _) = gen._label_means(np.random.default_rng(seed), "T1", m)
        mu_new, _, (wm2, gm2, _) = bright._label_means(np.random.default_rng(seed), "T1", m)
        assert (wm, gm) == (wm2, gm2)
        others = np.arange(len(mu_old)) != stem
        assert np.array_equal(mu_old[others], mu_new[others])
        frac_old = (mu_old[stem] - gm) / (wm - gm)
        frac_new = (mu_new[stem] - gm) / (wm - gm)
        assert -0.1 < frac_old < 0.7 and 0.5 < frac_new < 1.1, (frac_old, frac_new)
    assert torch.equal(gen.sample(3).image,
                       SynthGenerator(dataclasses.replace(gen.cfg, brainstem_fraction=()),
                                      gen.maps).sample(3).image)
    assert held_out_config(bright.cfg).brainstem_fraction == ()
    with pytest.raises(ValueError, match="brainstem_fraction"):
        SynthGenerator(dataclasses.replace(gen.cfg, brainstem_fraction=(0.9, 0.2)), gen.maps)


def test_mirrored_anatomy_and_elastic_scale_are_training_only(gen):
    """synth.p_mirror: a head's anatomy is the label map's mirror image (left and right swapped);
    0 keeps the old draws. synth.elastic_mm may be raised for training; held-out heads keep 3 mm."""
    import dataclasses

    from screener.model.synth import held_out_config

    still = dataclasses.replace(gen.cfg, max_rotation_deg=0.0, scale_range=(1.0, 1.0),
                                max_shift_mm=0.0, elastic_mm=0.0)
    plain = SynthGenerator(still, gen.maps)
    mirrored = SynthGenerator(dataclasses.replace(still, p_mirror=1.0), gen.maps)
    centre = plain._centres[0]
    pts, aff = plain._sampling_points(np.random.default_rng(0), torch.Generator().manual_seed(0),
                                      centre)
    pts_m, aff_m = mirrored._sampling_points(np.random.default_rng(0),
                                             torch.Generator().manual_seed(0), centre)
    assert np.array_equal(aff, aff_m)
    # the mirror's points are the plain points reflected through the centre along R
    assert np.allclose(pts_m[..., 0], 2 * centre[0] - pts[..., 0])
    assert np.allclose(pts_m[..., 1:], pts[..., 1:])
    lab, lab_m = plain._sample_labels(0, pts), mirrored._sample_labels(0, pts_m)
    assert torch.equal(lab_m, lab.flip(0)) and not torch.equal(lab_m, lab)
    # a training run with both options draws the same held-out heads as one without them
    strong = dataclasses.replace(gen.cfg, p_mirror=0.5, elastic_mm=8.0)
    held = held_out_config(strong)
    assert held.p_mirror == 0.0 and held.elastic_mm == 3.0 == gen.cfg.elastic_mm
    assert held == held_out_config(gen.cfg)
    assert torch.equal(SynthGenerator(held, gen.maps).sample(5).image,
                       SynthGenerator(held_out_config(gen.cfg), gen.maps).sample(5).image)
    with pytest.raises(ValueError, match="p_mirror"):
        SynthGenerator(dataclasses.replace(gen.cfg, p_mirror=1.5), gen.maps)
    with pytest.raises(ValueError, match="elastic_mm"):
        SynthGenerator(dataclasses.replace(gen.cfg, elastic_mm=-1.0), gen.maps)


def test_held_out_config_resets_every_training_only_option_and_nothing_else(gen):
    """A training config that sets every training-only option still gives held-out heads the
    config they had before any of those options existed; the options shared with training
    (label maps, grid, lesion probability, ...) pass through unchanged."""
    import dataclasses

    from screener.model.synth import TRAINING_ONLY_FIELDS, SynthConfig, held_out_config

    names = {f.name for f in dataclasses.fields(SynthConfig)}
    assert set(TRAINING_ONLY_FIELDS) <= names
    trained = dataclasses.replace(
        gen.cfg, p_tissue_mimic=0.25, contrast_weights=(3, 1, 1, 1, 1), p_large_lesion=0.3,
        flair_gm_ratio=(1.1, 1.3), extra_lesions=(1, 3), lesion_amplitude_min=0.12,
        brainstem_fraction=(0.4, 1.0), p_mirror=0.5, elastic_mm=8.0, p_lesion=0.42)
    assert all(getattr(trained, n) != getattr(gen.cfg, n) for n in TRAINING_ONLY_FIELDS)
    held = held_out_config(trained)
    assert held == dataclasses.replace(held_out_config(gen.cfg), p_lesion=0.42)
    assert held.p_lesion == 0.42 and held.label_maps_dir == gen.cfg.label_maps_dir
