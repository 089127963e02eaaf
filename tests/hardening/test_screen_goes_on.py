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
