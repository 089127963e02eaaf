"""`screener screen` on several studies: one study whose screening raises does not stop the
others (it is reported as failed, without a report, and the exit status says so)."""

from __future__ import annotations

import argparse

import numpy as np

from screener.io.dicom_writer import StudyIdentity, write_mr_series


def test_a_failing_study_does_not_stop_the_others(tmp_path, monkeypatch, capsys):
    import screener.pipeline as pipeline

    for name in ("a", "b"):
        write_mr_series(np.ones((8, 8, 3)), np.diag([2.0, 2.0, 3.0, 1.0]), tmp_path / "in" / name,
                        identity=StudyIdentity(patient_name=f"Zzyzx^{name}"))
    real = pipeline.screen_study
    calls = []

    def flaky(study, outdir, **kw):
        calls.append(study.study_instance_uid)
        if len(calls) == 1:
            raise OSError("disk full while writing report.json")
        return real(study, outdir, **kw)

    monkeypatch.setattr(pipeline, "screen_study", flaky)
    monkeypatch.setattr(pipeline, "load_model", lambda cfg, device="auto": None)
    args = argparse.Namespace(inputs=[str(tmp_path / "in")], output=str(tmp_path / "out"),
                              config=None, device="cpu")
    code = pipeline.run_screen_cli(args)
    out = capsys.readouterr().out.splitlines()
    assert len(calls) == 2 and code == 1
    assert [line.split("\t")[1] for line in out] == ["failed", "indeterminate"]
    assert len(list((tmp_path / "out").glob("*/report.json"))) == 1


def _tiny_study(folder):
    from screener.config import load_config
    from screener.io import find_studies

    write_mr_series(np.ones((8, 8, 3)), np.diag([2.0, 2.0, 3.0, 1.0]), folder,
                    identity=StudyIdentity(patient_name="Zzyzx^Write"))
    cfg = load_config()
    return find_studies([folder], cfg).studies[0], cfg


def test_outputs_that_cannot_be_written_end_indeterminate(tmp_path, monkeypatch):
    import json

    import screener.report.json as report_json
    from screener.pipeline import screen_study

    study, cfg = _tiny_study(tmp_path / "in")
    real, calls = report_json.build_report, []

    def broken_once(**kw):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("No space left on device")
        return real(**kw)

    monkeypatch.setattr(report_json, "build_report", broken_once)
    rep = screen_study(study, tmp_path / "out", config=cfg, model=None)
    on_disk = json.loads(next((tmp_path / "out").glob("*/report.json")).read_text())
    assert on_disk == rep
    assert rep["decision"] == "indeterminate"
    assert any(r.startswith("outputs_not_written: OSError") for r in rep["reasons"])
    assert rep["outputs"]["anomaly_map"] is None


def test_when_nothing_can_be_written_the_error_is_raised(tmp_path, monkeypatch):
    import pytest

    import screener.report.json as report_json
    from screener.pipeline import screen_study

    study, cfg = _tiny_study(tmp_path / "in")

    def broken(**kw):
        raise OSError("No space left on device")

    monkeypatch.setattr(report_json, "build_report", broken)
    with pytest.raises(OSError, match="No space left"):
        screen_study(study, tmp_path / "out", config=cfg, model=None)
    assert not list((tmp_path / "out").glob("*/report.json"))
