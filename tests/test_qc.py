"""QC: each reason is triggered by its own input, and a clean input triggers none."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from screener.config import ConfigError, load_config
from screener.qc import (QCConfig, brain_reasons, contrast_to_noise, noise_reasons, noise_sigma,
                         qc_config, series_reasons, study_reasons)
from screener.types import SequenceClass, SeriesInfo, Study


def codes(reasons):
    return [r.split(":", 1)[0] for r in reasons]


def good_info(**kw) -> SeriesInfo:
    base = dict(study_instance_uid="1.2.3", series_instance_uid="1.2.3.4", modality="MR",
                body_part="HEAD", sequence=SequenceClass.FLAIR, voxel_mm=(0.9, 0.9, 5.0),
                slice_thickness_mm=5.0, slice_gap_mm=0.0, shape=(256, 256, 28))
    base.update(kw)
    return SeriesInfo(**base)


def test_config_from_default_yaml_and_typos_rejected():
    c = qc_config()
    assert isinstance(c, QCConfig) and c.max_slice_thickness_mm == 7.0
    cfg = load_config()
    cfg["qc"] = dict(cfg["qc"], max_slice_thicknes_mm=3.0)
    with pytest.raises(ConfigError):
        qc_config(cfg)


def test_clean_series_has_no_reason():
    assert series_reasons(good_info()) == []
    assert series_reasons(good_info(sequence=SequenceClass.T1, voxel_mm=(1, 1, 1),
                                    slice_thickness_mm=1.0, shape=(176, 256, 176))) == []


@pytest.mark.parametrize("change,code", [
    (dict(modality="CT"), "not_mr"),
    (dict(sequence=SequenceClass.LOCALIZER), "non_structural_sequence"),
    (dict(sequence=SequenceClass.DWI), "non_structural_sequence"),
    (dict(sequence=SequenceClass.ADC), "non_structural_sequence"),
    (dict(sequence=SequenceClass.OTHER), "non_structural_sequence"),
    (dict(body_part="KNEE"), "body_part_not_head"),
    (dict(warnings=["missing_slices: about 2 slice(s) missing"]), "missing_slices"),
    (dict(warnings=["uneven_spacing: up to 0.8 mm"]), "uneven_spacing"),
    (dict(warnings=["duplicate_positions: 4 images"]), "duplicate_positions"),
    (dict(warnings=["inconsistent_orientation: 3 degrees"]), "inconsistent_orientation"),
    (dict(warnings=["mosaic: 64 tiles"]), "mosaic"),
    (dict(warnings=["absurd_size: 1e9 voxels"]), "absurd_size"),
    (dict(warnings=["no_geometry"]), "no_geometry"),
    (dict(voxel_mm=(0.9, 0.9, float("nan"))), "no_geometry"),
    (dict(slice_thickness_mm=9.0, voxel_mm=(0.9, 0.9, 9.0), shape=(256, 256, 16)),
     "thickness_above_limit"),
    (dict(slice_thickness_mm=5.0, slice_gap_mm=2.0, voxel_mm=(0.9, 0.9, 7.5), shape=(256, 256, 16)),
     "thickness_above_limit"),  # 5 mm slices + 2 mm gap: sampled every 7.5 mm
    (dict(slice_thickness_mm=4.0, slice_gap_mm=2.6, voxel_mm=(0.9, 0.9, 6.6)), "slice_gap_above_limit"),
    (dict(voxel_mm=(2.5, 2.5, 5.0)), "inplane_too_coarse"),
    (dict(shape=(256, 256, 10), voxel_mm=(0.9, 0.9, 6.5), slice_thickness_mm=4.5,
          slice_gap_mm=2.0), "too_few_slices"),  # 65 mm coverage too: both apply

    (dict(shape=(256, 256, 15)), "coverage_too_small"),
    (dict(shape=(256, 256, 28, 30)), "multi_volume"),
    (dict(shape=()), "no_geometry"),
])
def test_each_series_reason_from_its_own_input(change, code):
    reasons = series_reasons(good_info(**change))
    assert code in codes(reasons), reasons
    # Only the intended problem (few slices necessarily also means little coverage).
    also = {"coverage_too_small"} if code == "too_few_slices" else set()
    assert set(codes(reasons)) == {code} | also, reasons


def test_informational_warning_does_not_block_and_detail_kept():
    assert series_reasons(good_info(warnings=["gantry_tilt: 2 degrees"])) == []
    r = series_reasons(good_info(slice_thickness_mm=9.0, voxel_mm=(0.9, 0.9, 9.0), shape=(256, 256, 16)))
    assert r == ["thickness_above_limit: 9.0 mm > 7.0 mm"]


def test_slice_count_from_sop_uids_when_no_shape():
    info = good_info(shape=(), sop_instance_uids=[f"1.{i}" for i in range(28)])
    assert series_reasons(info) == []
    assert series_reasons(good_info(), shape=(256, 256, 5)) != []


def test_study_reasons():
    ok = good_info()
    dwi = good_info(sequence=SequenceClass.DWI, series_instance_uid="9")
    assert study_reasons(Study("1.2.3", [ok, dwi])) == []
    assert codes(study_reasons(Study("1.2.3", []))) == ["no_series"]
    r = study_reasons(Study("1.2.3", [dwi, good_info(sequence=SequenceClass.LOCALIZER)]))
    assert codes(r) == ["no_assessable_series"] and "non_structural_sequence" in r[0]
    ct = good_info(modality="CT")
    assert "not_mr" in codes(study_reasons(Study("1.2.3", [ct])))
    knee = good_info(body_part="KNEE")
    assert "body_part_not_head" in codes(study_reasons(Study("1.2.3", [knee])))
    # Body part absent: no objection on that ground.
    assert study_reasons(Study("1.2.3", [good_info(body_part="")])) == []
    # Caller-computed reasons (with shapes) are used as given.
    assert codes(study_reasons(Study("1.2.3", [ok]), [["too_few_slices: 3 < 12"]])) == [
        "no_assessable_series"]


def ellipsoid(shape, affine, centre_ras, radii_mm):
    ijk = np.indices(shape).reshape(3, -1).T.astype(float)
    ras = ijk @ affine[:3, :3].T + affine[:3, 3]
    q = (((ras - centre_ras) / radii_mm) ** 2).sum(1)
    return (q <= 1).reshape(shape)


AFF2 = np.diag([2.0, 2.0, 2.0, 1.0])
AFF2[:3, 3] = [-100, -120, -100]


def test_brain_plausible_volume_and_inside_fov():
    brain = ellipsoid((100, 120, 100), AFF2, [0, 0, 0], [70, 85, 60])
    expected = 4 / 3 * np.pi * 70 * 85 * 60 / 1000
    assert brain.sum() * 8 / 1000 == pytest.approx(expected, rel=0.03)
    assert brain_reasons(brain, AFF2) == []


def test_brain_volume_implausible_small_and_large():
    small = ellipsoid((100, 120, 100), AFF2, [0, 0, 0], [40, 50, 40])  # ~335 ml
    assert codes(brain_reasons(small, AFF2)) == ["brain_volume_implausible"]
    assert codes(brain_reasons(np.zeros((10, 10, 10), bool), AFF2)) == ["brain_volume_implausible"]
    big = ellipsoid((100, 120, 100), AFF2, [0, 0, 0], [95, 115, 95])  # ~4.3 l
    assert "brain_volume_implausible" in codes(brain_reasons(big, AFF2))


def test_brain_cut_off_names_the_world_side():
    # Field of view stops 30 mm below the top of the brain: cut at the superior edge.
    aff = AFF2.copy()
    aff[2, 3] = -100
    brain = ellipsoid((100, 120, 80), aff, [0, 0, 30], [70, 85, 60])  # ends at z = 58 mm
    r = brain_reasons(brain, aff)
    assert codes(r) == ["brain_cut_off"] and "superior" in r[0]
    # Same situation with a flipped slice axis (k runs superior -> inferior): still superior.
    flip = aff.copy()
    flip[2, 2], flip[2, 3] = -2.0, 58.0
    r2 = brain_reasons(brain[:, :, ::-1], flip)
    assert codes(r2) == ["brain_cut_off"] and "superior" in r2[0]


def test_noise_reasons_trigger_on_low_cnr_only():
    rng = np.random.default_rng(0)
    brain = ellipsoid((100, 120, 100), AFF2, [0, 0, 0], [70, 85, 60])
    core = ellipsoid((100, 120, 100), AFF2, [0, 0, 0], [45, 55, 40])
    clean = np.where(brain, 100.0, 0.0) + np.where(core, 40.0, 0.0)
    quiet = clean + rng.normal(0, 5, clean.shape)
    loud = clean + rng.normal(0, 40, clean.shape)
    assert noise_sigma(quiet, brain) == pytest.approx(5.0, rel=0.05)
    assert noise_sigma(loud, brain) == pytest.approx(40.0, rel=0.05)
    # Two tissue levels 40 apart: spread ~ 40 + 2 x 1.645 sigma-ish; quiet ~ 10, loud ~ 4.
    assert contrast_to_noise(quiet, brain) > 8
    assert contrast_to_noise(loud, brain) < 5
    assert noise_reasons(quiet, brain) == []
    r = noise_reasons(loud, brain)
    assert codes(r) == ["severe_noise"], r
    # Offset and scale do not matter (z-scored data): same verdicts after (x - m) / s.
    z_quiet = (quiet - quiet[brain].mean()) / quiet[brain].std()
    assert contrast_to_noise(z_quiet, brain) == pytest.approx(contrast_to_noise(quiet, brain))
    assert noise_reasons(z_quiet, brain) == []
    tiny = np.zeros_like(brain)
    tiny[50, 60, 50] = True
    assert codes(noise_reasons(clean, tiny)) == ["severe_noise"]


def test_config_dataclass_validates():
    c = qc_config()
    with pytest.raises(ValueError):
        dataclasses.replace(c, brain_volume_ml=[2000.0, 600.0])
