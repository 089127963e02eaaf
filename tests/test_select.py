"""Sequence classification from headers and from NIfTI/BIDS-style names (rules in
configs/series-rules.yaml)."""

from __future__ import annotations

import pytest

from screener.config import ConfigError
from screener.select import classify_series, load_rules
from screener.types import SequenceClass as C
from screener.types import SeriesInfo


def _nifti(name: str) -> SeriesInfo:
    return SeriesInfo(study_instance_uid="1", series_instance_uid="2", series_description=name,
                      source="nifti")


def _dicom(description: str = "", **headers) -> SeriesInfo:
    return SeriesInfo(study_instance_uid="1", series_instance_uid="2",
                      series_description=description, headers=headers)


@pytest.mark.parametrize("name,expected", [
    ("sub-01_FLAIR", C.FLAIR), ("sub-01_ses-1_T1w", C.T1), ("sub-01_ce-gadolinium_T1w", C.T1C),
    ("sub-01_T2w", C.T2), ("sub-01_T2starw", C.SWI), ("sub-01_PDw", C.PD), ("sub-01_dwi", C.DWI),
    ("BraTS-GLI-00001-000-t2f", C.FLAIR), ("BraTS-GLI-00001-000-t1c", C.T1C),
    ("BraTS-GLI-00001-000-t1n", C.T1), ("BraTS-GLI-00001-000-t2w", C.T2),
    ("BraTS-GLI-00001-000-seg", C.OTHER), ("brats_t1ce", C.T1C), ("training01_01_flair", C.FLAIR),
    ("training01_01_mask1", C.OTHER), ("Flair_subtrMeanDivStd", C.FLAIR), ("brainmask", C.OTHER),
    ("chris_t1", C.T1), ("sub-01_task-rest_bold", C.OTHER), ("scan_0003", C.OTHER),
    ("sub-01_T1w_FLAIR", C.FLAIR),
])
def test_nifti_names(name, expected):
    assert classify_series(_nifti(name)) is expected


@pytest.mark.parametrize("description,headers,expected", [
    ("t1_mprage_sag_p2_iso", {}, C.T1),
    ("t1_mprage_sag_p2_iso", {"ContrastBolusAgent": "Gadovist"}, C.T1C),
    ("AX T1 POST GAD", {}, C.T1C),
    ("t2_tse_tra", {}, C.T2), ("t2_tirm_tra_dark-fluid", {}, C.FLAIR), ("Ax T2 FLAIR", {}, C.FLAIR),
    ("AAHead_Scout_32ch-head-coil", {}, C.LOCALIZER),
    ("", {"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]}, C.LOCALIZER),
    ("ep2d_diff_3scan_trace_p2", {"ImageType": ["ORIGINAL", "PRIMARY", "DIFFUSION", "TRACEW"]}, C.DWI),
    ("ep2d_diff_3scan_trace_p2_ADC", {"ImageType": ["DERIVED", "PRIMARY", "DIFFUSION", "ADC"]}, C.ADC),
    ("swi_tra", {}, C.SWI), ("AX SWAN", {}, C.SWI), ("pd_tse_cor", {}, C.PD),
    ("t1_mprage_MPR_cor", {"ImageType": ["DERIVED", "SECONDARY", "MPR"]}, C.OTHER),
    ("t2_tse_tra_phase", {"ImageType": ["ORIGINAL", "PRIMARY", "P"]}, C.OTHER),
    # header-only rules (no useful description): timing decides
    ("series 7", {"RepetitionTime": 9000, "EchoTime": 90, "InversionTime": 2500,
                  "ScanningSequence": ["SE", "IR"]}, C.FLAIR),
    ("series 8", {"RepetitionTime": 500, "EchoTime": 12, "ScanningSequence": ["SE"]}, C.T1),
    ("series 9", {"RepetitionTime": 500, "EchoTime": 12, "ScanningSequence": ["SE"],
                  "ContrastBolusAgent": "Gd"}, C.T1C),
    ("series 10", {"RepetitionTime": 4000, "EchoTime": 100, "ScanningSequence": ["SE"]}, C.T2),
    ("series 11", {"RepetitionTime": 3000, "EchoTime": 15, "ScanningSequence": ["SE"]}, C.PD),
    ("series 12", {}, C.OTHER),
])
def test_dicom_headers(description, headers, expected):
    assert classify_series(_dicom(description, **headers)) is expected


def test_written_contrasts_are_classified(tmp_path):
    """The writer's contrast presets (real acquisition headers) get their class end to end."""
    import numpy as np

    from screener.io import find_studies
    from screener.io.dicom_writer import StudyIdentity, write_mr_series

    ident = StudyIdentity()
    for n, contrast in enumerate(["T1", "T2", "FLAIR", "localizer"]):
        write_mr_series(np.ones((8, 8, 3)), np.eye(4), tmp_path / contrast, identity=ident,
                        contrast=contrast, series_number=n + 1)
    series = find_studies([tmp_path]).studies[0].series
    assert [s.sequence for s in series] == [C.T1, C.T2, C.FLAIR, C.LOCALIZER]


def test_bad_rules_file_is_a_config_error(tmp_path):
    bad = tmp_path / "rules.yaml"
    bad.write_text("rules:\n  - {class: T3, text: 'x'}\n")
    with pytest.raises(ConfigError, match="T3"):
        load_rules(str(bad))
    bad.write_text("rules:\n  - {class: T1, colour: red}\n")
    with pytest.raises(ConfigError, match="colour"):
        load_rules(str(bad))
