"""DICOM outputs: a Comprehensive 3D SR (TID 1500) of the result and a SEG of the findings.

Both objects join the source study (same patient and StudyInstanceUID, new series), reference
the source instances, and say in SeriesDescription that they are AI-generated and not for
diagnosis. Built with highdicom, which validates them at construction.

SR content (TID 1500 Imaging Measurement Report):
- one image-level measurement group (TID 1501) "study screening": qualitative evaluation
  "Screening result" = Negative / Positive (flagged) / Indeterminate, the abnormality score
  and the calibrated confidence as measurements (the analysed instances are the SR's evidence,
  CurrentRequestedProcedureEvidenceSequence, not repeated in the group: listing ~190 source
  images twice doubled the SR's build and write time);
- one group per finding: volume (ml), maximum diameter (mm), probability, signal
  (hyperintense / hypointense / mixed), tracked as "finding N";
- a "Qualitative Evaluations" container (TID 1500 row 12) with TEXT items: resolution limits
  statement, reasons, operating point with its FNR bound, each finding's centroid (RAS and DICOM LPS mm) and signal, disclaimer.

SEG: binary, one segment "abnormal signal", on the source series' grid. Volume grid
convention (screener.io.dicom_writer): voxel (i, j, k) lies in source file k, columns run
along i and rows along j, so frame k is ``mask[:, :, k].T``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from screener import __version__
from screener.atomic import atomic_write
from screener.report import ReportConfig, report_config

if TYPE_CHECKING:
    import pydicom

SCHEME = "99SCREENER"  # private coding scheme for concepts DICOM does not define


def _codes() -> dict[str, Any]:
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes

    return {
        "result": CodedConcept("SCREEN-RESULT", SCHEME, "Screening result"),
        "negative": CodedConcept("260385009", "SCT", "Negative"),
        "flagged": CodedConcept("10828004", "SCT", "Positive"),
        "indeterminate": CodedConcept("82334004", "SCT", "Indeterminate"),
        "score": CodedConcept("ABN-SCORE", SCHEME, "Abnormality score"),
        "confidence": CodedConcept("CONFIDENCE", SCHEME, "Calibrated confidence of result"),
        "signal": CodedConcept("SIGNAL", SCHEME, "Signal relative to surrounding brain"),
        "hyperintense": CodedConcept("HYPER", SCHEME, "Hyperintense"),
        "hypointense": CodedConcept("HYPO", SCHEME, "Hypointense"),
        "mixed": CodedConcept("MIXED", SCHEME, "Mixed signal"),
        "unit_one": CodedConcept("1", "UCUM", "no units"),
        "ml": CodedConcept("ml", "UCUM", "milliliter"),
        "mm": CodedConcept("mm", "UCUM", "millimeter"),
        "volume": codes.SCT.Volume,
        "diameter": codes.SCT.Diameter,
        "probability": codes.DCM.Probability,
        "finding": codes.SCT.Lesion,
        "procedure": codes.SCT.ImagingProcedure,
    }


def _algorithm() -> Any:
    from highdicom.sr import AlgorithmIdentification

    return AlgorithmIdentification(name="screener", version=__version__)


def _operating_point(op: Mapping[str, Any]) -> str:
    return (f"flagged when abnormality score >= {op['threshold']:.4f} ({op['method']}, target "
            f"sensitivity {op['target_sensitivity']:.2f}); on {op['n_abnormal']} abnormal / "
            f"{op['n_normal']} normal calibration studies the false-negative rate is <= "
            f"{op['fnr_upper_bound']:.3f} with {1 - op['delta']:.0%} confidence ({op['bound']})")


def _location(n: int, finding: Mapping[str, Any]) -> str:
    x, y, z = (float(v) for v in finding["centroid_ras_mm"])
    return (f"finding {n}: centroid RAS ({x:.1f}, {y:.1f}, {z:.1f}) mm = DICOM patient LPS "
            f"({-x:.1f}, {-y:.1f}, {z:.1f}) mm; {finding['signal']}; series "
            f"{finding['series']}")


def write_sr(report: Mapping[str, Any], source_datasets: Sequence[pydicom.Dataset],
             path: str | Path, cfg: ReportConfig | Mapping[str, Any] | None = None) -> Path:
    """Write the report as a Comprehensive 3D SR in the source study.

    Args:
        report: a validated report.json dict.
        source_datasets: the analysed series' instances (headers suffice; pixel data unused).
        path: output file (written atomically).
        cfg: ReportConfig or a whole config mapping.
    """
    import highdicom as hd
    from highdicom.sr import (ContainerContentItem, MeasurementReport,
                              MeasurementsAndQualitativeEvaluations, ObservationContext,
                              QualitativeEvaluation, TextContentItem, TrackingIdentifier)
    from highdicom.sr.enum import RelationshipTypeValues
    from pydicom.sr.codedict import codes

    c = report_config(cfg)
    if not source_datasets:
        raise ValueError("write_sr needs the source instances it reports on")
    k = _codes()
    uid = hd.UID
    study_measurements = [
        hd.sr.Measurement(name=k["score"], value=float(report["abnormality_score"]),
                          unit=k["unit_one"], algorithm_id=_algorithm())]
    if report["confidence"] is not None:
        study_measurements.append(hd.sr.Measurement(
            name=k["confidence"], value=float(report["confidence"]), unit=k["unit_one"],
            algorithm_id=_algorithm()))
    groups = [MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=uid(), identifier="study screening"),
        algorithm_id=_algorithm(), measurements=study_measurements,
        qualitative_evaluations=[QualitativeEvaluation(k["result"], k[report["decision"]])])]
    for n, f in enumerate(report["findings"], start=1):
        groups.append(MeasurementsAndQualitativeEvaluations(
            tracking_identifier=TrackingIdentifier(uid=uid(), identifier=f"finding {n}"),
            finding_type=k["finding"], algorithm_id=_algorithm(),
            measurements=[
                hd.sr.Measurement(name=k["volume"], value=float(f["volume_ml"]), unit=k["ml"]),
                hd.sr.Measurement(name=k["diameter"], value=float(f["max_diameter_mm"]), unit=k["mm"]),
                hd.sr.Measurement(name=k["probability"], value=float(f["probability"]),
                                  unit=k["unit_one"])],
            qualitative_evaluations=[QualitativeEvaluation(k["signal"], k[f["signal"]])]))
    observer = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=uid(), name="screener", manufacturer_name=c.manufacturer,
        model_name=str(report["model"].get("name", "")))
    context = ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.cid270.Device, observer_identifying_attributes=observer))
    content = MeasurementReport(observation_context=context, procedure_reported=k["procedure"],
                                imaging_measurements=groups)
    texts = ContainerContentItem(name=hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations"),
                                 relationship_type=RelationshipTypeValues.CONTAINS)
    texts.ContentSequence = hd.sr.ContentSequence([
        TextContentItem(name=hd.sr.CodedConcept(name, SCHEME, meaning), value=value[:9000],
                        relationship_type=RelationshipTypeValues.CONTAINS)
        for name, meaning, value in [
            ("RES-LIMITS", "Resolution limits", report["resolution_limits"]["statement"]),
            *[("REASON", "Reason", r) for r in report["reasons"]],
            *([("OPERATING-POINT", "Operating point", _operating_point(report["operating_point"]))]
              if report.get("operating_point") else []),
            *[("FINDING-LOC", "Finding location", _location(n, f))
              for n, f in enumerate(report["findings"], start=1)],
            ("DISCLAIMER", "Disclaimer", report["disclaimer"])]])
    content[0].ContentSequence.append(texts)
    sr = hd.sr.Comprehensive3DSR(
        evidence=list(source_datasets), content=content[0], series_instance_uid=uid(),
        series_number=c.sr_series_number, sop_instance_uid=uid(), instance_number=1,
        manufacturer=c.manufacturer, series_description=c.series_description[:64],
        is_complete=True, is_final=False, is_verified=False)
    return atomic_write(path, lambda p: sr.save_as(p, enforce_file_format=True))


def _seg_frames(m: np.ndarray, source_datasets: Sequence[pydicom.Dataset],
                frames: Sequence[tuple[int, int]] | None) -> np.ndarray:
    """SEG pixel frames in the order of the source frames: one per source file (single-frame
    series) or one per frame of a single multi-frame source; slice k goes to frames[k]."""
    n_files = len(source_datasets)
    counts = [int(getattr(ds, "NumberOfFrames", 1) or 1) for ds in source_datasets]
    if n_files > 1 and any(n > 1 for n in counts):
        raise ValueError("SEG sources must be single-frame instances or one multi-frame instance")
    if frames is None:
        frames = [(k, 0) for k in range(m.shape[2])] if n_files > 1 else [(0, k) for k in range(m.shape[2])]
    if len(frames) != m.shape[2]:
        raise ValueError(f"mask has {m.shape[2]} slices but {len(frames)} source frames are given")
    total = n_files if n_files > 1 else counts[0]
    rows, cols = int(source_datasets[0].Rows), int(source_datasets[0].Columns)
    if (rows, cols) != (m.shape[1], m.shape[0]):
        raise ValueError(f"mask in-plane {m.shape[:2]} does not match Columns x Rows {cols} x {rows}")
    out = np.zeros((total, rows, cols), dtype=np.uint8)
    seen: set[int] = set()
    for k, (file_index, frame_index) in enumerate(frames):
        target = file_index if n_files > 1 else frame_index
        if not 0 <= target < total or target in seen or (n_files > 1 and frame_index != 0):
            raise ValueError(f"slice {k}: source frame {(file_index, frame_index)} is invalid or repeated")
        seen.add(target)
        out[target] = m[:, :, k].T  # rows run along j, columns along i
    return out


def write_seg(mask: npt.ArrayLike, source_datasets: Sequence[pydicom.Dataset],
              path: str | Path, report: Mapping[str, Any] | None = None,
              cfg: ReportConfig | Mapping[str, Any] | None = None,
              frames: Sequence[tuple[int, int]] | None = None) -> Path | None:
    """Write the findings mask as a binary DICOM SEG on the source series' grid.

    Args:
        mask: (i, j, k) boolean/label volume on the source grid; nonzero = abnormal.
        source_datasets: the source series' instances: one single-frame instance per slice,
            or one multi-frame (enhanced) instance.
        path: output file (written atomically).
        report: optional report dict (model name for the algorithm identification).
        cfg: ReportConfig or a whole config mapping.
        frames: (index into source_datasets, 0-based frame index) of each slice k, as in
            SeriesInfo.frames; default: file k (single-frame) or frame k (multi-frame).

    Returns:
        The path, or None when the mask is empty (a SEG without a segment is not written).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    c = report_config(cfg)
    m = np.asarray(mask) != 0
    if m.ndim != 3:
        raise ValueError(f"mask must be 3D (i, j, k), got shape {m.shape}")
    pixel_frames = _seg_frames(m, source_datasets, frames)
    if not m.any():
        return None
    name = str((report or {}).get("model", {}).get("name", "screener"))
    algorithm = hd.AlgorithmIdentificationSequence(
        name=name, version=__version__, family=codes.cid7162.ArtificialIntelligence)
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label="abnormal signal",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm)
    seg = hd.seg.Segmentation(
        source_images=list(source_datasets), pixel_array=pixel_frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=hd.UID(),
        series_number=c.seg_series_number, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer=c.manufacturer, manufacturer_model_name="screener",
        software_versions=__version__, device_serial_number="0",
        series_description=c.series_description[:64])
    return atomic_write(path, lambda p: seg.save_as(p, enforce_file_format=True))
