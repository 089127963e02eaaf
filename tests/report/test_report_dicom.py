"""DICOM SR and SEG: read back with highdicom, right study, right instances, right geometry."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from report_cases import LESION_RAS, make_case, make_report

from screener.report.dicom import write_seg, write_sr

LPS = np.diag([-1.0, -1.0, 1.0])


def walk(items, out):
    """(concept meaning, value) of every SR content item, depth first."""
    for item in items:
        name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
        if item.ValueType == "CODE":
            out.append((name, item.ConceptCodeSequence[0].CodeMeaning))
        elif item.ValueType == "NUM":
            out.append((name, float(item.MeasuredValueSequence[0].NumericValue)))
        elif item.ValueType == "TEXT":
            out.append((name, item.TextValue))
        if "ContentSequence" in item:
            walk(item.ContentSequence, out)
    return out


@pytest.mark.parametrize("geometry", ["axial", "sagittal", "oblique"])
def test_seg_frames_on_source_grid_and_lesion_in_world(tmp_path, calibration, geometry):
    case = make_case(tmp_path, geometry)
    report = make_report(case, calibration)
    path = write_seg(case.analysis.labels, case.datasets, tmp_path / "out" / "seg.dcm", report)
    seg = hd.seg.segread(path)
    src = {str(ds.SOPInstanceUID): k for k, ds in enumerate(case.datasets)}
    assert seg.StudyInstanceUID == case.identity.study_instance_uid
    assert seg.PatientID == case.datasets[0].PatientID
    assert "NOT FOR DIAGNOSIS" in seg.SeriesDescription
    assert seg.number_of_segments == 1
    assert seg.get_segment_description(1).segment_label == "abnormal signal"
    refs = {str(r.ReferencedSOPInstanceUID)
            for s in seg.ReferencedSeriesSequence for r in s.ReferencedInstanceSequence}
    assert refs == set(src)
    pixels = seg.pixel_array if seg.pixel_array.ndim == 3 else seg.pixel_array[None]
    world_pts = []
    for f, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        uid = str(frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        k = src[uid]
        np.testing.assert_array_equal(pixels[f] > 0, case.analysis.labels[:, :, k].T > 0)
        # Geometry from the SEG's own headers: IPP + IOP + PixelSpacing, LPS -> RAS.
        ipp = np.array(frame.PlanePositionSequence[0].ImagePositionPatient, float)
        np.testing.assert_allclose(ipp, np.array(case.datasets[k].ImagePositionPatient, float),
                                   atol=1e-3)
        iop = np.array(seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
                       .ImageOrientationPatient, float)
        dr, dc = (float(v) for v in seg.SharedFunctionalGroupsSequence[0]
                  .PixelMeasuresSequence[0].PixelSpacing)
        rows, cols = np.nonzero(pixels[f])
        lps = ipp + np.outer(cols * dc, iop[:3]) + np.outer(rows * dr, iop[3:])
        world_pts.append(lps @ LPS.T)
    centroid = np.concatenate(world_pts).mean(axis=0)
    assert np.linalg.norm(centroid - LESION_RAS) < 1.5, centroid
    finding = report["findings"][0]
    assert np.linalg.norm(centroid - np.array(finding["centroid_ras_mm"])) < 0.1


def test_seg_none_for_empty_mask_and_shape_checked(tmp_path, calibration):
    case = make_case(tmp_path, "axial", lesion=False)
    assert write_seg(case.analysis.labels, case.datasets, tmp_path / "seg.dcm") is None
    assert not (tmp_path / "seg.dcm").exists()
    with pytest.raises(ValueError):
        write_seg(np.ones((3, 3, 3)), case.datasets, tmp_path / "seg.dcm")
    with pytest.raises(ValueError):
        write_seg(case.analysis.labels.transpose(1, 0, 2), case.datasets, tmp_path / "seg.dcm")


@pytest.mark.parametrize("lesion,decision", [(True, "flagged"), (False, "negative")])
def test_sr_reads_back_with_decision_score_and_evidence(tmp_path, calibration, lesion, decision):
    case = make_case(tmp_path, "oblique", lesion=lesion)
    report = make_report(case, calibration)
    assert report["decision"] == decision
    path = write_sr(report, case.datasets, tmp_path / "out" / "sr.dcm")
    sr = hd.sr.srread(path)
    assert isinstance(sr, hd.sr.Comprehensive3DSR)
    assert sr.StudyInstanceUID == case.identity.study_instance_uid
    assert sr.SeriesInstanceUID != case.datasets[0].SeriesInstanceUID
    assert sr.PatientName == case.datasets[0].PatientName
    assert "AI-generated" in sr.SeriesDescription and "NOT FOR DIAGNOSIS" in sr.SeriesDescription
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == case.datasets[0].SeriesInstanceUID
    assert [str(r.ReferencedSOPInstanceUID) for r in evidence.ReferencedSOPSequence] == [
        str(ds.SOPInstanceUID) for ds in case.datasets]
    items = walk(sr.ContentSequence, [])
    values = dict(items)
    assert values["Screening result"] == {"flagged": "Positive", "negative": "Negative"}[decision]
    assert values["Abnormality score"] == pytest.approx(report["abnormality_score"])
    assert values["Calibrated confidence of result"] == pytest.approx(report["confidence"])
    assert values["Resolution limits"] == report["resolution_limits"]["statement"]
    assert "not a diagnostic device" in values["Disclaimer"]
    assert f"<= {calibration.fnr_upper_bound:.3f} with 95% confidence" in values["Operating point"]
    if lesion:
        assert values["Volume"] == pytest.approx(report["findings"][0]["volume_ml"])
        assert values["Diameter"] == pytest.approx(report["findings"][0]["max_diameter_mm"])
        assert values["Signal relative to surrounding brain"] == "Hyperintense"
        x, y, z = report["findings"][0]["centroid_ras_mm"]
        assert f"LPS ({-x:.1f}, {-y:.1f}, {z:.1f}) mm" in values["Finding location"]
    else:
        assert "Volume" not in values
    # The measurement groups highdicom itself recognises as TID 1501.
    groups = sr.content.get_image_measurement_groups()
    assert len(groups) == 1 + len(report["findings"])


def test_sr_indeterminate_without_confidence(tmp_path, calibration):
    case = make_case(tmp_path, "axial", lesion=False)
    report = make_report(case, calibration, study_reasons=["brain_cut_off: 30 cm2"])
    sr = hd.sr.srread(write_sr(report, case.datasets, tmp_path / "sr.dcm"))
    values = walk(sr.ContentSequence, [])
    assert ("Screening result", "Indeterminate") in values
    assert ("Reason", "brain_cut_off: 30 cm2") in values
    assert "Calibrated confidence of result" not in dict(values)
    assert pydicom.dcmread(tmp_path / "sr.dcm").Modality == "SR"


def test_seg_and_sr_on_a_multiframe_source(tmp_path, calibration):
    """Enhanced (multi-frame) source: slice k goes to the frame holding slice k's position."""
    import logging

    case = make_case(tmp_path, "oblique")
    logging.getLogger("highdicom").setLevel(logging.ERROR)  # VOI LUT notes of the converter
    mf = hd.legacy.LegacyConvertedEnhancedMRImage(
        case.datasets, series_instance_uid=hd.UID(), series_number=7,
        sop_instance_uid=hd.UID(), instance_number=1)
    mf.save_as(tmp_path / "mf.dcm", enforce_file_format=True)
    mf = pydicom.dcmread(tmp_path / "mf.dcm")
    positions = [np.array(f.PlanePositionSequence[0].ImagePositionPatient, float)
                 for f in mf.PerFrameFunctionalGroupsSequence]
    frames = []
    for ds in case.datasets:  # slice k -> frame with the same ImagePositionPatient
        ipp = np.array(ds.ImagePositionPatient, float)
        frames.append((0, int(np.argmin([np.linalg.norm(p - ipp) for p in positions]))))
    assert sorted(f for _, f in frames) == list(range(len(case.datasets)))
    assert [f for _, f in frames] != list(range(len(frames)))  # the converter reordered them
    report = make_report(case, calibration)
    seg = hd.seg.segread(write_seg(case.analysis.labels, [mf], tmp_path / "seg.dcm", report,
                                   frames=frames))
    pixels = seg.pixel_array if seg.pixel_array.ndim == 3 else seg.pixel_array[None]
    pts = []
    for f, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        src = frame.DerivationImageSequence[0].SourceImageSequence[0]
        assert src.ReferencedSOPInstanceUID == mf.SOPInstanceUID
        mf_frame = int(src.ReferencedFrameNumber) - 1
        k = [fr for _, fr in frames].index(mf_frame)
        np.testing.assert_array_equal(pixels[f] > 0, case.analysis.labels[:, :, k].T > 0)
        ipp = np.array(frame.PlanePositionSequence[0].ImagePositionPatient, float)
        iop = np.array(seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
                       .ImageOrientationPatient, float)
        dr, dc = (float(v) for v in seg.SharedFunctionalGroupsSequence[0]
                  .PixelMeasuresSequence[0].PixelSpacing)
        rows, cols = np.nonzero(pixels[f])
        pts.append((ipp + np.outer(cols * dc, iop[:3]) + np.outer(rows * dr, iop[3:])) @ LPS.T)
    assert np.linalg.norm(np.concatenate(pts).mean(0) - LESION_RAS) < 1.5
    sr = hd.sr.srread(write_sr(report, [mf], tmp_path / "sr.dcm"))
    ev = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert [r.ReferencedSOPInstanceUID for r in ev.ReferencedSOPSequence] == [mf.SOPInstanceUID]
    with pytest.raises(ValueError):  # a repeated frame is refused
        write_seg(case.analysis.labels, [mf], tmp_path / "bad.dcm", frames=[(0, 0)] * len(frames))
