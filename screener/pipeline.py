"""Screens one study: io -> select/qc -> preprocess -> model -> decide -> report.

The one path that `screen`, `batch`, `serve` and `evaluate` all call. It never raises for a
bad study: anything it cannot assess ends as an `indeterminate` report with reasons. Every
output is written to a temporary name and renamed; report.json is written last, so its
presence means the study's outputs are complete.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from screener.config import load_config, section
from screener.types import SequenceClass, SeriesInfo, SeriesVolume, Study

log = logging.getLogger(__name__)

# Which analysed series carries the anomaly map, SR and SEG: the most lesion-conspicuous contrast.
PRIMARY_ORDER = (SequenceClass.FLAIR, SequenceClass.T2, SequenceClass.T1C, SequenceClass.T1,
                 SequenceClass.PD, SequenceClass.SWI)


@dataclass
class SeriesResult:
    info: SeriesInfo
    used: bool
    why_not_used: list[str] = field(default_factory=list)
    volume: SeriesVolume | None = None
    prediction: Any = None
    analysis: Any = None
    limits: dict[str, Any] | None = None


def study_dir_name(study: Study) -> str:
    """Output folder name of a study: a hash of its UID, safe on every file system and free of
    anything a hostile UID could use to escape the output folder."""
    digest = hashlib.sha256(study.study_instance_uid.encode("utf-8", "replace")).hexdigest()[:16]
    return f"study-{digest}"


def uid_hash(uid: str) -> str:
    """Short stable hash for logs (UIDs can be traced back; names and IDs never appear)."""
    return hashlib.sha256(uid.encode("utf-8", "replace")).hexdigest()[:10]


def load_model(config: dict[str, Any] | None = None, device: str = "auto") -> Any:
    """Load the model named in the config once (per process / worker)."""
    from screener.infer import ModelConfig, load_model as _load

    cfg = config if config is not None else load_config()
    return _load(section(cfg, "model", ModelConfig), device)


def _primary_key(r: SeriesResult) -> tuple[int, float]:
    seq = r.info.sequence
    rank = PRIMARY_ORDER.index(seq) if seq in PRIMARY_ORDER else len(PRIMARY_ORDER)
    return rank, float(np.prod(r.info.voxel_mm))


def _analyse(r: SeriesResult, model: Any, config: dict[str, Any], timing: dict[str, float]) -> None:
    """Load, predict, QC on the brain mask, find findings; marks the series unused on failure."""
    from screener import qc
    from screener.decide import decide_config
    from screener.errors import InputError
    from screener.infer import predict
    from screener.io import load_series
    from screener.model.verifier import analyse_prediction

    t = time.perf_counter()
    try:
        vol = load_series(r.info, config)
    except InputError as exc:
        r.used, r.why_not_used = False, [f"unreadable: {exc}"]
        return
    if vol.data.ndim != 3:
        r.used, r.why_not_used = False, ["multi_volume: 4D series are not assessed"]
        return
    timing["read"] = timing.get("read", 0.0) + time.perf_counter() - t
    verifier = getattr(model, "verifier", None)  # the finding verifier needs the diagnostic maps
    pred = predict(vol, model, diagnostics=verifier is not None)
    for key, value in pred.timing_s.items():
        timing[key] = timing.get(key, 0.0) + value
    dc = decide_config(config)
    brain = pred.brain_prob >= dc.brain_threshold
    reasons = qc.brain_reasons(brain, vol.affine, config) + qc.noise_reasons(vol.data, brain, config)
    cut = qc.qc_config(config).max_brain_cut_area_cm2
    if pred.brain_at_box_edge_cm2 > cut:
        reasons.append(f"brain_cut_off: {pred.brain_at_box_edge_cm2:.0f} cm2 of brain on the edge "
                       f"of the head region the model analysed (> {cut:.0f} cm2)")
    r.volume, r.prediction = vol, pred
    if reasons:
        r.used, r.why_not_used = False, reasons
        return
    r.analysis, _ = analyse_prediction(pred, vol.data, vol.affine, r.info.series_instance_uid,
                                       dc, verifier)


def screen_study(study: Study, outdir: Path, *, config: dict[str, Any] | None = None,
                 model: Any = None, device: str = "auto", sidecar: Any = None) -> dict[str, Any]:
    """Screen one study and write its outputs into outdir/<study_dir_name>/.

    Args:
        study: a Study from screener.io.find_studies.
        outdir: the output root; the study's folder is created inside it.
        config: the merged config (default: configs/default.yaml).
        model: a model from load_model (loaded here when None).
        device: used only when the model is loaded here.
        sidecar: a screener.sidecar.Sidecar whose helper process builds DICOM SR/SEG while
            this one writes the maps (None: all in this process).
    Returns:
        The report dict, as written to report.json.
    """
    from screener.outputs import write_study_outputs

    cfg = config if config is not None else load_config()
    t0 = time.perf_counter()
    timing: dict[str, float] = {}
    results = [SeriesResult(info=s, used=True) for s in study.series]
    try:
        from screener import qc

        for r in results:
            reasons = qc.series_reasons(r.info, cfg)
            if reasons:
                r.used, r.why_not_used = False, reasons
        study_reasons = qc.study_reasons(study, [r.why_not_used for r in results], cfg)
        candidates = [r for r in results if r.used]
        if candidates and not study_reasons:
            if model is None:
                model = load_model(cfg, device)
            for r in sorted(candidates, key=_primary_key):
                _analyse(r, model, cfg, timing)
            study_reasons = qc.study_reasons(study, [r.why_not_used for r in results], cfg)
        error = None
    except Exception as exc:  # fail closed: an unexpected failure is indeterminate, not lost
        log.error("study %s: internal error %s\n%s", uid_hash(study.study_instance_uid),
                  type(exc).__name__, traceback.format_exc())
        error = f"internal_error: {type(exc).__name__} while screening; see the log"
        study_reasons = [error]
    folder = outdir / study_dir_name(study)
    try:
        return write_study_outputs(study, results, study_reasons, folder, config=cfg, model=model,
                                   timing=timing, t0=t0, sidecar=sidecar)
    except Exception as exc:
        # Fail closed here too: a result that could not be written (disk full, a writer's bug)
        # becomes an indeterminate report without maps or pictures when the disk still takes
        # one; only when even that fails does the study count as failed (the caller's error).
        log.error("study %s: outputs not written (%s); writing an indeterminate report",
                  uid_hash(study.study_instance_uid), type(exc).__name__)
        why = f"outputs_not_written: {type(exc).__name__} while writing the results; see the log"
        bare = [SeriesResult(info=r.info, used=False, why_not_used=r.why_not_used or [why])
                for r in results]
        try:
            return write_study_outputs(study, bare, [why], folder, config=cfg, model=model,
                                       timing=timing, t0=t0)
        except Exception:
            raise exc from None


def screen_inputs(inputs: list[str], outdir: Path, *, config: dict[str, Any] | None = None,
                  device: str = "auto") -> list[dict[str, Any]]:
    """Find the studies in `inputs` and screen each; returns their reports."""
    from screener.hardening.logs import file_problem
    from screener.io import find_studies

    cfg = config if config is not None else load_config()
    found = find_studies(inputs, cfg)
    for err in found.errors:
        log.warning("not read: %s", file_problem(err.path, err.reason))  # no paths: names
    model = None
    reports = []
    for study in found.studies:
        if model is None:
            model = load_model(cfg, device)
        reports.append(screen_study(study, outdir, config=cfg, model=model))
    return reports


def run_screen_cli(args: argparse.Namespace) -> int:
    from screener.sidecar import Sidecar

    # The helper is forked now, before torch exists in this process: it reads the study's
    # headers and warms highdicom while this process imports torch and MONAI and loads the model.
    with Sidecar() as sidecar:
        return _screen_cli(args, sidecar)


def _screen_cli(args: argparse.Namespace, sidecar: Any) -> int:
    from screener.hardening.logs import file_problem
    from screener.io import archive
    from screener.sidecar import find_studies_job, warm_dicom_writers

    cfg = load_config(args.config)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    finding = sidecar.submit(find_studies_job, list(args.inputs), cfg)
    if sidecar.forked:
        sidecar.submit(warm_dicom_writers)
    try:
        model = load_model(cfg, args.device)
    finally:  # the model failing to load must not leave archive folders behind
        found, extracted = finding.result()
        archive.remove_at_exit(extracted)
    for err in found.errors:
        print(f"not read: {file_problem(err.path, err.reason)}", file=sys.stderr)
    if not found.studies:
        print("no study found in the inputs", file=sys.stderr)
        return 1
    failed = 0
    for study in found.studies:
        try:
            rep = screen_study(study, out, config=cfg, model=model, sidecar=sidecar)
        except Exception as exc:  # one study's failure never stops the others (no report: failed)
            failed += 1
            log.exception("study %s: not screened (%s)", uid_hash(study.study_instance_uid),
                          type(exc).__name__)
            print(f"{study_dir_name(study)}\tfailed\t{type(exc).__name__}: no report written; "
                  "see the log")
            continue
        score = rep.get("abnormality_score")
        conf = rep.get("confidence")
        print(f"{study_dir_name(study)}\t{rep['decision']}\tscore={score if score is None else f'{score:.3f}'}"
              f"\tconfidence={conf if conf is None else f'{conf:.3f}'}"
              f"\t{'; '.join(rep.get('reasons', [])[:2])}")
    return 1 if failed else 0
