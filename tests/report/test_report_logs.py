"""The report stage never logs patient identifiers (name, ID, birth date, accession)."""

from __future__ import annotations

import logging

from report_cases import make_case, make_report

from screener.report.dicom import write_seg, write_sr
from screener.report.html import write_html
from screener.report.json import write_report
from screener.report.overlay import write_overlay


def test_no_identifiers_in_logs(tmp_path, calibration, caplog):
    caplog.set_level(logging.DEBUG)
    case = make_case(tmp_path, "oblique")
    rep = make_report(case, calibration)
    out = tmp_path / "out"
    write_seg(case.analysis.labels, case.datasets, out / "seg.dcm", rep)
    write_sr(rep, case.datasets, out / "sr.dcm")
    write_overlay(case.image, case.affine, case.prob, case.analysis.labels, out / "overlay.png")
    write_html(rep, out)
    write_report(rep, out / "report.json")
    ident = case.identity
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (ident.patient_name, ident.patient_id, ident.patient_birth_date,
                   ident.accession_number, "Doe", "Jane"):
        assert secret not in text
    # The identifiers are where they belong: in the DICOM objects of the source study.
    import pydicom

    assert str(pydicom.dcmread(out / "sr.dcm").PatientID) == ident.patient_id
