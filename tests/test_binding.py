"""Which score settings a calibration or benchmark records, and when they differ from a screen's."""

from __future__ import annotations

import copy
import dataclasses

from screener.binding import (bound_to_weights, default_score_settings, score_settings,
                              settings_differences)
from screener.config import load_config
from screener.infer import ModelConfig


def test_bound_to_weights_needs_the_same_named_sha():
    assert bound_to_weights("ab", "ab")
    assert not bound_to_weights("ab", "cd")
    assert not bound_to_weights(None, "ab") and not bound_to_weights("", "")


def test_same_settings_match_and_non_score_settings_are_left_out():
    config = load_config()
    base = score_settings(ModelConfig(), config)
    assert settings_differences(base, base) == []
    assert settings_differences(None, base) == ["no settings recorded"]
    # where the weights live, tiles per call, CPU precision, diagnostics, what is done after the
    # score: none of these changes a score
    other = dataclasses.replace(ModelConfig(), weights="elsewhere", sw_batch_size=4, cpu_bf16="off",
                                asymmetry_sigma_mm=3.0)
    changed = copy.deepcopy(config)
    changed["decide"].update(target_sensitivity=0.9, signal_z=2.0, min_size_n=3)
    assert settings_differences(base, score_settings(other, changed)) == []


def test_score_settings_that_differ_are_named():
    config = load_config()
    base = default_score_settings()
    changed = copy.deepcopy(config)
    changed["decide"]["score_volume_scale_ml"] = 2.0
    phased = dataclasses.replace(ModelConfig(), grid_offsets_mm=((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)))
    diff = settings_differences(base, score_settings(phased, changed))
    assert len(diff) == 2
    assert diff[0].startswith("decide.score_volume_scale_ml: recorded 0.5, now 2.0")
    assert diff[1].startswith("model.grid_offsets_mm: recorded [[0.0, 0.0, 0.0]]")


def test_a_setting_the_file_does_not_record_counts_as_its_default():
    """A file written before a setting existed: equal while the setting is at its default."""
    old = default_score_settings()
    del old["model"]["grid_offsets_mm"]
    assert settings_differences(old, default_score_settings()) == []
    phased = dataclasses.replace(ModelConfig(), grid_offsets_mm=((1.0, 1.0, 1.0),))
    assert settings_differences(old, score_settings(phased, load_config())) == [
        "model.grid_offsets_mm: recorded [[0.0, 0.0, 0.0]], now [[1.0, 1.0, 1.0]]"]
    # and a setting the file records that the code no longer has is a difference
    gone = default_score_settings()
    gone["model"]["retired_option"] = 1
    assert settings_differences(gone, default_score_settings()) == [
        "model.retired_option: recorded 1, now '(no such setting)'"]
