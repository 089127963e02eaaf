"""report.json: build, validate and write the report contract (schema_version "1").

The contract (../shared/DESIGN.md) is what worklists, notebooks and the evaluation harness
read, so a report is validated before it is written: a wrong type, a missing field or a
non-finite number raises ReportError and nothing is written. Fields may be added, never
removed or retyped without a new schema_version. Added here beyond DESIGN.md: ``disclaimer``,
``operating_point`` (threshold, method, calibration n, FNR upper bound and delta, or null when
the model ships no calibration), per finding ``mean_probability``, ``score``, ``voxels``,
``label``, per series ``series_description`` and ``path``, and in ``resolution_limits``
``slice_gap_mm``, ``benchmark_slice_thickness_mm``, ``benchmark_n``, ``benchmark_contrast``,
``no_claim_reason``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from screener.atomic import write_text_atomic
from screener.types import Decision, SeriesInfo

if TYPE_CHECKING:
    from screener.decide import StudyDecision

SCHEMA_VERSION = "1"
DISCLAIMER = ("Research and worklist-triage aid, not a diagnostic device. AI-generated result; "
              "not for diagnosis. A negative result covers visible structural signal change only.")

NUM = (int, float)
OPT_NUM = (int, float, type(None))
OPT_STR = (str, type(None))


class ReportError(ValueError):
    """A report does not satisfy the report.json contract."""


def plain(value: Any) -> Any:
    """Numpy scalars/arrays, tuples, Paths and enums -> JSON-ready Python values."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Decision):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


def series_entry(info: SeriesInfo, used: bool, why_not_used: Sequence[str] = (),
                 shape: Sequence[int] | None = None) -> dict[str, Any]:
    """One item of ``series[]`` from the series' header facts and the QC outcome."""
    return {
        "series_instance_uid": info.series_instance_uid,
        "path": str(info.source_files[0]) if info.source == "nifti" and info.source_files else None,
        "series_description": info.series_description,
        "sequence": info.sequence.value,
        "voxel_mm": [float(v) for v in info.voxel_mm],
        "slice_thickness_mm": info.slice_thickness_mm,
        "slice_gap_mm": info.slice_gap_mm,
        "shape": [int(s) for s in (shape if shape is not None else info.shape)],
        "used": bool(used),
        "why_not_used": list(why_not_used),
    }


def build_report(
    *,
    study: Mapping[str, Any],
    decision: StudyDecision,
    series: Sequence[Mapping[str, Any]],
    resolution_limits: Mapping[str, Any] | None,
    model: Mapping[str, Any],
    device: str,
    timing_s: Mapping[str, float],
    outputs: Mapping[str, str | None],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble report.json (validated) from the stages' results.

    Args:
        study: ``{study_instance_uid, accession_number, source}``.
        decision: decide.decide_study() result.
        series: ``series_entry()`` of every series of the study (used or not).
        resolution_limits: resolution.resolution_limits() of the primary series, or None when
            nothing was analysed (then written as a block of nulls with the statement).
        model: ``{name, version, weights_sha256}``.
        device: "cpu", "cuda:0" ...
        timing_s: ``{read, preprocess, infer, report, total}`` seconds.
        outputs: ``{anomaly_map, sr, seg, overlay}`` relative paths (None when not written);
            may add ``html``.
        extra: more top-level fields (added freely; may not replace contract fields).
    """
    from screener.resolution import statement

    limits = dict(resolution_limits) if resolution_limits else None
    if limits is None:
        limits = {"voxel_mm": None, "slice_thickness_mm": None, "slice_gap_mm": None,
                  "min_detectable_diameter_mm": None, "sensitivity_at_min_diameter": None,
                  "no_claim_reason": "no series was analysed"}
        limits["statement"] = ("No series was analysed, so nothing is claimed. "
                               + statement_scope())
    elif "statement" not in limits:
        limits["statement"] = statement(limits)
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "study": dict(study),
        "decision": decision.decision,
        "abnormality_score": decision.abnormality_score,
        "confidence": decision.confidence,
        "reasons": list(decision.reasons),
        "series": [dict(s) for s in series],
        "findings": [f.to_dict() for f in decision.findings],
        "resolution_limits": limits,
        "operating_point": decision.operating_point,
        "model": dict(model),
        "device": device,
        "timing_s": dict(timing_s),
        "outputs": dict(outputs),
        "disclaimer": DISCLAIMER,
    }
    for key, value in (extra or {}).items():
        if key in report:
            raise ReportError(f"extra field {key!r} would replace a contract field")
        report[key] = value
    report = plain(report)
    validate_report(report)
    return report


def statement_scope() -> str:
    from screener.resolution import CLINICAL, SCOPE

    return f"{SCOPE}. {CLINICAL}"


def _check(where: str, value: Any, types: tuple[type, ...] | type) -> None:
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ReportError(f"{where}: expected {types}, got a boolean")
    if not isinstance(value, types):
        raise ReportError(f"{where}: expected {types}, got {type(value).__name__} {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ReportError(f"{where}: not a finite number ({value})")


def _fields(where: str, obj: Any, spec: Mapping[str, Any]) -> None:
    _check(where, obj, dict)
    for key, types in spec.items():
        if key not in obj:
            raise ReportError(f"{where}: missing field {key!r}")
        _check(f"{where}.{key}", obj[key], types)


def _unit(where: str, value: Any) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ReportError(f"{where}: {value} is outside [0, 1]")


def _vec3(where: str, value: Any, optional: bool = False) -> None:
    if value is None and optional:
        return
    _check(where, value, list)
    if len(value) != 3:
        raise ReportError(f"{where}: expected 3 numbers, got {value!r}")
    for i, v in enumerate(value):
        _check(f"{where}[{i}]", v, NUM)


def validate_report(report: Mapping[str, Any]) -> None:
    """Raise ReportError unless ``report`` satisfies the report.json contract."""
    _fields("report", report, {
        "schema_version": str, "study": dict, "decision": str, "abnormality_score": NUM,
        "confidence": OPT_NUM, "reasons": list, "series": list, "findings": list,
        "resolution_limits": dict, "model": dict, "device": str, "timing_s": dict,
        "outputs": dict, "disclaimer": str})
    if report["schema_version"] != SCHEMA_VERSION:
        raise ReportError(f"schema_version must be {SCHEMA_VERSION!r}")
    _fields("study", report["study"], {"study_instance_uid": str, "accession_number": OPT_STR,
                                       "source": OPT_STR})
    decision = report["decision"]
    if decision not in {d.value for d in Decision}:
        raise ReportError(f"decision {decision!r} is not one of negative/flagged/indeterminate")
    _unit("abnormality_score", report["abnormality_score"])
    _unit("confidence", report["confidence"])
    if decision == Decision.NEGATIVE.value and report["confidence"] is None:
        raise ReportError("a negative decision needs a calibrated confidence")
    if decision != Decision.NEGATIVE.value and not report["reasons"]:
        raise ReportError(f"a {decision} decision needs reasons")
    for i, r in enumerate(report["reasons"]):
        _check(f"reasons[{i}]", r, str)
    for i, s in enumerate(report["series"]):
        w = f"series[{i}]"
        _fields(w, s, {"sequence": str, "voxel_mm": list, "slice_thickness_mm": OPT_NUM,
                       "slice_gap_mm": OPT_NUM, "shape": list, "used": bool, "why_not_used": list})
        if not (s.get("series_instance_uid") or s.get("path")):
            raise ReportError(f"{w}: needs series_instance_uid or path")
        _vec3(f"{w}.voxel_mm", s["voxel_mm"])
        if s["used"] == bool(s["why_not_used"]):
            raise ReportError(f"{w}: used={s['used']} contradicts why_not_used={s['why_not_used']}")
    if decision != Decision.INDETERMINATE.value and not any(s["used"] for s in report["series"]):
        raise ReportError(f"a {decision} decision needs at least one used series")
    for i, f in enumerate(report["findings"]):
        w = f"findings[{i}]"
        _fields(w, f, {"volume_ml": NUM, "centroid_ras_mm": list, "max_diameter_mm": NUM,
                       "signal": str, "probability": NUM, "series": str})
        _vec3(f"{w}.centroid_ras_mm", f["centroid_ras_mm"])
        if f["signal"] not in ("hyperintense", "hypointense", "mixed"):
            raise ReportError(f"{w}.signal: {f['signal']!r}")
        _unit(f"{w}.probability", f["probability"])
    lim = report["resolution_limits"]
    _fields("resolution_limits", lim, {
        "voxel_mm": (list, type(None)), "slice_thickness_mm": OPT_NUM,
        "min_detectable_diameter_mm": OPT_NUM, "sensitivity_at_min_diameter": OPT_NUM,
        "statement": str})
    _vec3("resolution_limits.voxel_mm", lim["voxel_mm"], optional=True)
    if decision == Decision.NEGATIVE.value and lim["min_detectable_diameter_mm"] is None:
        raise ReportError("a negative decision needs a resolution claim")
    # Null model fields are allowed: a study refused before any model ran has no model.
    _fields("model", report["model"], {"name": OPT_STR, "version": OPT_STR, "weights_sha256": OPT_STR})
    if decision != Decision.INDETERMINATE.value and not report["model"]["name"]:
        raise ReportError(f"a {decision} decision needs the model that made it")
    _fields("timing_s", report["timing_s"], {k: NUM for k in
                                             ("read", "preprocess", "infer", "report", "total")})
    _fields("outputs", report["outputs"], {k: OPT_STR for k in
                                           ("anomaly_map", "sr", "seg", "overlay")})
    for key, value in report["outputs"].items():
        if value is not None and (Path(value).is_absolute() or ".." in Path(value).parts):
            raise ReportError(f"outputs.{key}: {value!r} must be a relative path inside the study folder")


def write_report(report: Mapping[str, Any], path: str | Path) -> Path:
    """Validate and write report.json atomically (temp + fsync + rename)."""
    validate_report(report)
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    return write_text_atomic(path, text)
