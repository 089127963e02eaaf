"""Which weights and settings a calibration or benchmark file was measured with, and whether
they are the ones a screen runs with.

An operating point (calibration.json) and the size claims (benchmark.json) hold only for the
scores they were measured on. Those scores depend on the network (the sha256 of models/model.pt)
and on the settings that shape them: the model section (windows, test-time averaging, the outlier
term, hull, verifier, grid offsets) and the decide settings that turn maps into findings and a
study score. Each file records both; the screen uses a file only when both match
(screener.outputs), and the synthetic benchmark refuses a calibration that does not.

Settings that do not change a score are left out: where the weights live (`model.weights`), how
many tiles go through the network at once (`model.sw_batch_size`), the CPU precision choice
(`model.cpu_bf16`, which follows the host), diagnostics-only maps (`model.asymmetry_sigma_mm`),
and the decide settings used after the score (signal labels, target, resolution claims).
A setting a file does not record (added to the code after the file was written) counts as its
default, which by this project's practice reproduces the behaviour from before it existed.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

NOT_SCORE_SHAPING_MODEL = ("weights", "sw_batch_size", "cpu_bf16", "asymmetry_sigma_mm")
SCORE_SHAPING_DECIDE = ("voxel_threshold", "brain_threshold", "connectivity", "min_component_ml",
                        "component_probability", "score_volume_scale_ml")


def bound_to_weights(recorded_sha256: str | None, weights_sha256: str | None) -> bool:
    """Whether a file measured on the weights with `recorded_sha256` belongs to the loaded
    weights. A file that records none is not taken on trust."""
    return bool(recorded_sha256) and recorded_sha256 == weights_sha256


def score_settings(model_config: Any, config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The settings that shape study scores: `model_config` (infer.ModelConfig) without the
    fields in NOT_SCORE_SHAPING_MODEL, and the SCORE_SHAPING_DECIDE fields of `config`'s decide
    section; plain JSON values (tuples become lists)."""
    from screener.decide import decide_config

    model = {k: v for k, v in dataclasses.asdict(model_config).items()
             if k not in NOT_SCORE_SHAPING_MODEL}
    dc = decide_config(config)
    decide = {k: getattr(dc, k) for k in SCORE_SHAPING_DECIDE}
    return json.loads(json.dumps({"model": model, "decide": decide}))


def default_score_settings() -> dict[str, dict[str, Any]]:
    """score_settings of the defaults (infer.ModelConfig(), configs/default.yaml)."""
    from screener.config import load_config
    from screener.infer import ModelConfig

    return score_settings(ModelConfig(), load_config())


def settings_differences(recorded: dict[str, Any] | None, current: dict[str, dict[str, Any]]
                         ) -> list[str]:
    """'section.key: recorded R, now C' for every score setting that differs (a key the file
    does not record counts as its default); ['no settings recorded'] when `recorded` is None."""
    if recorded is None:
        return ["no settings recorded"]
    defaults: dict[str, dict[str, Any]] | None = None  # read only for a key the file lacks
    out = []
    for sec in sorted(set(current) | set(recorded)):
        now, then = current.get(sec, {}), recorded.get(sec) or {}
        for key in sorted(set(now) | set(then)):
            if key in then:
                was = then[key]
            else:
                defaults = defaults or default_score_settings()
                was = defaults.get(sec, {}).get(key)
            if key not in now or was != now[key]:
                out.append(f"{sec}.{key}: recorded {was!r}, now {now.get(key, '(no such setting)')!r}")
    return out


def calibration_mismatch(cal: Any, weights_sha256: str | None,
                         settings: dict[str, dict[str, Any]]) -> str | None:
    """Why calibration `cal` (screener.calibrate.Calibration) does not hold for the loaded
    weights and these score settings, or None when it does."""
    if not bound_to_weights(cal.weights_sha256, weights_sha256):
        named = f"sha256 {cal.weights_sha256[:12]}..." if cal.weights_sha256 else "no weights"
        return f"not fitted on the loaded weights (it names {named})"
    if diff := settings_differences(cal.settings, settings):
        return f"fitted with other score settings ({'; '.join(diff[:3])})"
    return None
