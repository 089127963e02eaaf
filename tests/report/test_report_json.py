"""report.json: every contract field, validation that rejects wrong types, atomic writes."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from report_cases import make_case, make_report

from screener.report.json import ReportError, build_report, validate_report, write_report

CONTRACT = {"schema_version", "study", "decision", "abnormality_score", "confidence", "reasons",
            "series", "findings", "resolution_limits", "model", "device", "timing_s", "outputs",
            "disclaimer"}


def test_flagged_report_has_every_contract_field(tmp_path, calibration):
    case = make_case(tmp_path, "axial")
    rep = make_report(case, calibration)
    assert CONTRACT <= set(rep)
    assert rep["schema_version"] == "1" and rep["decision"] == "flagged"
    assert set(rep["study"]) == {"study_instance_uid", "accession_number", "source"}
    f = rep["findings"][0]
    assert {"volume_ml", "centroid_ras_mm", "max_diameter_mm", "signal", "probability",
            "series"} <= set(f)
    assert f["series"] == case.info.series_instance_uid
    s = rep["series"][0]
    assert {"series_instance_uid", "sequence", "voxel_mm", "slice_thickness_mm", "slice_gap_mm",
            "shape", "used", "why_not_used"} <= set(s)
    assert s["shape"] == list(case.image.shape)
    assert {"voxel_mm", "slice_thickness_mm", "min_detectable_diameter_mm",
            "sensitivity_at_min_diameter", "statement"} <= set(rep["resolution_limits"])
    assert rep["operating_point"]["fnr_upper_bound"] == calibration.fnr_upper_bound
    # Plain JSON types only (numpy scalars converted), round-trips exactly.
    assert json.loads(json.dumps(rep, allow_nan=False)) == rep


def test_negative_and_indeterminate(tmp_path, calibration):
    case = make_case(tmp_path, "axial", lesion=False)
    neg = make_report(case, calibration)
    assert neg["decision"] == "negative" and neg["findings"] == [] and 0.5 < neg["confidence"] <= 1
    ind = make_report(case, calibration, study_reasons=["not_mr: modality CT"])
    assert ind["decision"] == "indeterminate" and ind["confidence"] is None
    assert ind["reasons"] == ["not_mr: modality CT"]


def _mutations():
    yield "decision", lambda r: r.__setitem__("decision", "maybe")
    yield "score type", lambda r: r.__setitem__("abnormality_score", "0.3")
    yield "score range", lambda r: r.__setitem__("abnormality_score", 1.5)
    yield "score nan", lambda r: r.__setitem__("abnormality_score", float("nan"))
    yield "confidence", lambda r: r.__setitem__("confidence", 2.0)
    yield "missing field", lambda r: r.pop("timing_s")
    yield "reasons item", lambda r: r["reasons"].append(3)
    yield "series used", lambda r: r["series"][0].__setitem__("used", "yes")
    yield "series contradiction", lambda r: r["series"][0].__setitem__("why_not_used", ["x: y"])
    yield "finding centroid", lambda r: r["findings"][0].__setitem__("centroid_ras_mm", [1, 2])
    yield "finding signal", lambda r: r["findings"][0].__setitem__("signal", "bright")
    yield "finding prob", lambda r: r["findings"][0].__setitem__("probability", True)
    yield "statement", lambda r: r["resolution_limits"].pop("statement")
    yield "timing", lambda r: r["timing_s"].__setitem__("total", None)
    yield "absolute output", lambda r: r["outputs"].__setitem__("sr", "/etc/passwd")
    yield "escaping output", lambda r: r["outputs"].__setitem__("seg", "../x.dcm")
    yield "schema", lambda r: r.__setitem__("schema_version", 1)
    yield "flag without reasons", lambda r: r.__setitem__("reasons", [])
    yield "flag without model", lambda r: r["model"].__setitem__("name", None)


@pytest.fixture(scope="module")
def flagged_report(tmp_path_factory, calibration):
    return make_report(make_case(tmp_path_factory.mktemp("case"), "axial"), calibration)


@pytest.mark.parametrize("name,mutate", list(_mutations()), ids=[n for n, _ in _mutations()])
def test_wrong_reports_are_rejected(tmp_path, flagged_report, name, mutate):
    rep = flagged_report
    validate_report(rep)
    bad = copy.deepcopy(rep)
    mutate(bad)
    with pytest.raises(ReportError):
        validate_report(bad)
    with pytest.raises(ReportError):
        write_report(bad, tmp_path / "report.json")
    assert not (tmp_path / "report.json").exists()


def test_negative_needs_confidence_and_resolution_claim(tmp_path, calibration):
    rep = make_report(make_case(tmp_path, "axial", lesion=False), calibration)
    for mutate in (lambda r: r.__setitem__("confidence", None),
                   lambda r: r["resolution_limits"].__setitem__("min_detectable_diameter_mm", None),
                   lambda r: r["series"][0].update(used=False, why_not_used=["x: y"])):
        bad = copy.deepcopy(rep)
        mutate(bad)
        with pytest.raises(ReportError):
            validate_report(bad)


def test_extra_fields_cannot_replace_contract(tmp_path, calibration):
    case = make_case(tmp_path, "axial")
    from screener.decide import decide_study
    from screener.report.json import series_entry

    d = decide_study([case.analysis], [], calibration, None)
    assert d.decision.value == "flagged"  # a flag stands without a size claim
    kw = dict(study={"study_instance_uid": "1", "accession_number": None, "source": None},
              decision=d, series=[series_entry(case.info, True)], resolution_limits=None,
              model={"name": "m", "version": "1", "weights_sha256": None}, device="cpu",
              timing_s=dict(read=0, preprocess=0, infer=0, report=0, total=0),
              outputs=dict(anomaly_map=None, sr=None, seg=None, overlay=None))
    rep = build_report(**kw, extra={"primary_series": None, "note": np.float32(1.5)})
    assert rep["note"] == 1.5 and isinstance(rep["note"], float)
    with pytest.raises(ReportError):
        build_report(**kw, extra={"decision": "negative"})
    with pytest.raises(ReportError):  # flagged needs a used series
        build_report(**dict(kw, series=[]))


def test_write_report_is_atomic(tmp_path, calibration):
    rep = make_report(make_case(tmp_path, "axial"), calibration)
    path = write_report(rep, tmp_path / "out" / "report.json")
    assert json.loads(path.read_text()) == rep
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]
