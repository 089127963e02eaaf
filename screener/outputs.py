"""Turns one study's analysis into its decision and output files.

Writes into the study folder: anomaly_map.nii.gz (probabilities on the primary series' own grid
and world space), sr.dcm and seg.dcm (DICOM input), overlay.png, report.html and, last,
report.json. Each file is written to a temporary name and renamed, and report.json comes last,
so a complete report.json means complete outputs.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from screener.types import SeriesVolume, Study

log = logging.getLogger(__name__)


def _model_block(model: Any) -> dict[str, Any]:
    if model is None:
        return {"name": None, "version": None, "weights_sha256": None}
    from screener.infer import network_precision

    return {"name": model.name, "version": model.version, "weights_sha256": model.weights_sha256,
            "precision": network_precision(model)}


def _calibration_and_benchmark(model: Any, config: dict[str, Any]
                               ) -> tuple[Any, Any, list[str], str | None]:
    """The weights' calibration and benchmark table, each only if it was measured on exactly
    these weights (the sha256 of models/model.pt it records) with the score settings this screen
    runs with (screener.binding).

    Returns (calibration or None, benchmark or None, study reasons, why the benchmark is not
    used or None). A file measured on other weights or settings, or naming none, is not used:
    the study gets no operating point (so it cannot be `negative`) and no resolution claim."""
    from screener.binding import (bound_to_weights, calibration_mismatch, score_settings,
                                  settings_differences)
    from screener.calibrate import Calibration
    from screener.resolution import load_benchmark

    if model is None:
        return None, None, [], None
    cal_path = model.weights_dir / "calibration.json"
    bench_path = model.weights_dir / "benchmark.json"
    cal = Calibration.load(cal_path) if cal_path.exists() else None
    bench = load_benchmark(bench_path) if bench_path.exists() else None
    settings = score_settings(model.config, config)
    reasons: list[str] = []
    bench_reason = None
    if cal is not None and (why := calibration_mismatch(cal, model.weights_sha256, settings)):
        log.error("calibration.json does not match these weights and settings; no operating point")
        reasons.append(f"calibration_mismatch: calibration.json was {why}; re-run the "
                       "calibration for these weights and settings")
        cal = None
    if bench is not None:
        if not bound_to_weights(bench.model.get("weights_sha256"), model.weights_sha256):
            bench_reason = "the benchmark table shipped was measured on other weights"
        elif settings_differences(bench.model.get("settings"), settings):
            bench_reason = "the benchmark table shipped was measured with other score settings"
        if bench_reason:
            log.error("benchmark.json does not match these weights and settings; "
                      "no resolution claim")
            bench = None
    return cal, bench, reasons, bench_reason


def _source_datasets(info: Any, n_slices: int
                     ) -> tuple[list[Any], list[tuple[int, int]] | None] | None:
    """Headers of the source instances (slice order) and, for multi-frame sources, which
    (file, frame) each slice came from; None for non-DICOM input."""
    import pydicom

    if info.source != "dicom" or not info.source_files:
        return None
    datasets = [pydicom.dcmread(str(p), stop_before_pixels=True) for p in info.source_files]
    frames = [tuple(f) for f in info.frames] if getattr(info, "frames", None) else None
    if frames is not None and len(frames) != n_slices:
        return None  # 4D or split series: slice -> frame mapping is not one to one
    if frames is None and len(datasets) != n_slices:
        return None
    return datasets, frames  # type: ignore[return-value]


def write_dicom_outputs(mask: np.ndarray, info: Any, report: dict[str, Any],
                        config: dict[str, Any], folder: Path) -> tuple[bool, bool]:
    """DICOM SEG of the findings (`mask`, on the primary series' grid) and SR of the report,
    into `folder`; returns (SEG written, SR written). Nothing is written for non-DICOM input.
    Runs in the `screen` command's helper process when there is one."""
    src = _source_datasets(info, mask.shape[2])
    if src is None:
        return False, False
    from screener.report.dicom import write_sr, write_seg

    sources, frames = src
    seg = sr = False
    try:
        seg = write_seg(mask, sources, folder / "seg.dcm", report, config,
                        frames=frames) is not None
        write_sr(report, sources, folder / "sr.dcm", config)
        sr = True
    except Exception:  # the decision stands; the missing outputs are null in the report
        log.exception("DICOM SR/SEG not written")
    return seg, sr


def _discard(job: Any, folder: Path) -> None:
    """Stop or wait for the SR/SEG job, then remove what it wrote."""
    job.settle()
    for name in ("seg.dcm", "sr.dcm"):
        (folder / name).unlink(missing_ok=True)


def write_study_outputs(study: Study, results: list[Any], study_reasons: list[str], folder: Path,
                        *, config: dict[str, Any], model: Any, timing: dict[str, float],
                        t0: float, sidecar: Any = None) -> dict[str, Any]:
    """Decide the study and write every output; returns the report dict.

    With a `sidecar` (screener.sidecar.Sidecar), DICOM SR/SEG are built in its helper process
    while this one writes the maps and the overlay."""
    from screener.decide import decide_config, decide_study
    from screener.io import write_nifti
    from screener.report.json import build_report, series_entry, write_report
    from screener.resolution import benchmark_contrast, best_limits, resolution_limits
    from screener.sidecar import Sidecar

    t_report = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    dc = decide_config(config)
    used = [r for r in results if r.used and r.analysis is not None]
    try:
        cal, bench, unbound, bench_reason = _calibration_and_benchmark(model, config)
        study_reasons = list(study_reasons) + unbound
    except Exception as exc:  # a broken calibration/benchmark file: no operating point, fail closed
        log.error("calibration or benchmark unreadable: %s", type(exc).__name__)
        cal, bench, bench_reason = None, None, None
        study_reasons = list(study_reasons) + [
            f"model_files_unreadable: calibration/benchmark could not be read ({type(exc).__name__})"]
    limits = [resolution_limits(r.info.voxel_mm, r.info.slice_thickness_mm, r.info.slice_gap_mm,
                                bench, dc.min_size_sensitivity, dc.resolution_aggregate,
                                dc.slice_tolerance_mm, dc.min_size_n,
                                contrast=benchmark_contrast(r.info.sequence),
                                match_contrast=dc.resolution_contrast == "matched",
                                missing_reason=bench_reason)
              for r in used]
    decision = decide_study([r.analysis for r in used], study_reasons, cal, best_limits(limits))
    primary = used[0] if used else None  # results were analysed in primary order
    outputs: dict[str, str | None] = {"anomaly_map": None, "sr": None, "seg": None,
                                      "overlay": None, "html": None, "brain_mask": None}
    series = [series_entry(r.info, r.used, r.why_not_used) for r in results]
    study_block = {"study_instance_uid": study.study_instance_uid,
                   "accession_number": study.accession_number or None,
                   "source": study.source}
    device = model.device if model is not None else "none"
    timing_s = {k: round(timing.get(k, 0.0), 3) for k in ("read", "preprocess", "infer")}

    def build(outs: dict[str, str | None]) -> dict[str, Any]:
        timing_s["report"] = round(time.perf_counter() - t_report, 3)
        timing_s["total"] = round(time.perf_counter() - t0, 3)
        return build_report(study=study_block, decision=decision, series=series,
                            resolution_limits=best_limits(limits), model=_model_block(model),
                            device=device, timing_s=timing_s, outputs=outs,
                            extra={"primary_series": primary.info.series_instance_uid
                                   if primary is not None else None})

    dicom_job = None
    if primary is not None and primary.info.source == "dicom":
        # SR and SEG carry the decision, findings and limits, not the output list or timing.
        dicom_job = (sidecar or Sidecar(enabled=False)).submit(
            write_dicom_outputs, primary.analysis.labels > 0, primary.info, build(outputs),
            config, folder)
    try:
        if primary is not None:
            vol = primary.volume
            amap = SeriesVolume(data=primary.prediction.lesion_prob.astype(np.float32),
                                affine=vol.affine, info=vol.info)
            write_nifti(amap, folder / "anomaly_map.nii.gz")
            outputs["anomaly_map"] = "anomaly_map.nii.gz"
            # The model's brain mask on the same grid: what `evaluate`'s FLAIR-threshold
            # baseline masks with (its definition asks for a brain mask). Findings were judged
            # there and, with model.hull_closing_mm, also in thick CSF-read regions of its hull.
            brain = primary.prediction.brain_prob >= dc.brain_threshold
            bmask = SeriesVolume(data=brain, affine=vol.affine, info=vol.info)
            write_nifti(bmask, folder / "brain_mask.nii.gz", dtype=np.uint8)
            outputs["brain_mask"] = "brain_mask.nii.gz"
            try:
                from screener.report.overlay import write_overlay

                score = decision.abnormality_score
                write_overlay(vol.data, vol.affine, primary.prediction.lesion_prob,
                              primary.analysis.labels, folder / "overlay.png", config,
                              findings=[f.to_dict() for f in decision.findings
                                        if f.series == vol.info.series_instance_uid],
                              brain_mask=brain,
                              title=f"{decision.decision.value} (score {score:.2f})")
                outputs["overlay"] = "overlay.png"
            except Exception:  # a picture must never cost the decision; logged for the operator
                log.exception("overlay not written")
        if dicom_job is not None:
            seg, sr = dicom_job.result()
            outputs["seg"] = "seg.dcm" if seg else None
            outputs["sr"] = "sr.dcm" if sr else None
        report = build(outputs)  # a report that cannot be built is not a missing picture
        try:
            from screener.report.html import write_html

            outputs["html"] = "report.html"
            report = build(outputs)
            write_html(report, folder, folder / "report.html")
        except Exception:
            log.exception("report.html not written")
            outputs["html"] = None
        report = build(outputs)
        write_report(report, folder / "report.json")
    except BaseException:
        if dicom_job is not None:  # no SR/SEG may stand beside a report that was not written
            _discard(dicom_job, folder)
        raise
    return report
