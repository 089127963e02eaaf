"""`screener evaluate`: study-, voxel- and lesion-level metrics beside the FLAIR baseline.

`screener evaluate MANIFEST -o OUTDIR` screens every study of a manifest CSV (or a BraTS/BIDS
folder) with the batch machinery, scores the model and the FLAIR-threshold baseline on the
same studies, and writes metrics.json, cases.csv, roc.png, sensitivity_by_size.png,
calibration.png and summary.md. `--synthetic N --seed S` runs the held-out synthetic benchmark
(screener.synthetic_benchmark). Nothing here tunes a threshold: the model's operating point
and the baseline's settings are fixed before the cases are seen.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from screener.baseline import BaselineConfig, run_baseline
from screener.atomic import write_json_atomic, write_text_atomic
from screener.batching.tasks import ManifestRow, read_manifest
from screener.config import load_config, section
from screener.metrics import proportion, rate_by_bin, study_level

log = logging.getLogger(__name__)
LABELS = {"abnormal": True, "normal": False}
MASK_WORDS = ("seg", "mask", "label", "ot", "lesion", "roi")
CASE_COLUMNS = ("case_id", "label", "pathology", "decision", "abnormality_score", "confidence",
                "baseline_decision", "baseline_score", "dice", "auprc", "baseline_dice",
                "baseline_auprc", "lesions", "lesions_detected", "baseline_lesions_detected",
                "mask", "reasons", "brain_ml", "baseline_brain_mask", "report_path", "notes")


@dataclass(frozen=True)
class EvaluateConfig:
    """The `evaluate:` config section."""

    workers: int = 1
    n_bootstrap: int = 2000
    seed: int = 20261125
    calibration_bins: int = 10
    voxel_threshold: float | None = None
    lesion_size_edges_mm: list[float] = field(
        default_factory=lambda: [0.0, 3.0, 5.0, 10.0, 20.0, 40.0, 1000.0])
    baseline: BaselineConfig = field(default_factory=BaselineConfig)


def folder_manifest(root: Path, out_csv: Path) -> Path:
    """Manifest for a BraTS/BIDS-style folder: each folder holding NIfTI files is a case.

    Files whose name holds seg/mask/label/OT/lesion/roi are masks, the rest inputs. With a
    mask the label is abnormal if any voxel is > 0, else normal; without one it is unknown
    (screened, excluded from labelled metrics). Folders holding only masks are skipped; masks
    kept apart from their images (BIDS derivatives/) are not paired: write a manifest CSV.
    """
    import nibabel as nib

    rows = []
    folders = sorted({f.parent for pat in ("*.nii", "*.nii.gz") for f in root.rglob(pat)})
    for folder in folders:
        files = sorted(p for p in folder.iterdir() if p.name.endswith((".nii", ".nii.gz")))
        def is_mask(p: Path) -> bool:
            stem = p.name.lower().replace(".nii.gz", "").replace(".nii", "")
            return any(w in stem.replace("-", "_").split("_") or stem.startswith(w)
                       for w in MASK_WORDS)
        masks = [p for p in files if is_mask(p)]
        inputs = [p for p in files if p not in masks]
        if not inputs:
            continue  # a folder of masks only (e.g. BIDS derivatives) is not a study
        label = ""
        if masks:
            label = "abnormal" if np.any(np.asarray(nib.load(masks[0]).dataobj) > 0) else "normal"
        rows.append({"study_id": str(folder.relative_to(root)).replace("/", "_") or folder.name,
                     "label": label, "pathology": "", "inputs": ";".join(str(p) for p in inputs),
                     "mask": str(masks[0]) if masks else "", "notes": ""})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["study_id", "label", "pathology", "inputs", "mask", "notes"])
    w.writeheader()
    w.writerows(rows)
    return write_text_atomic(out_csv, buf.getvalue())


def _load_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    img = nib.load(str(path))
    return np.asarray(img.dataobj, dtype=np.float32), np.asarray(img.affine, float)


def _analysed(report: dict[str, Any]) -> bool:
    """The model looked at the study: assessed, or a series was used (indeterminate for a
    study-level reason such as a missing calibration). Unanalysed studies carry no score."""
    if report.get("decision") in ("negative", "flagged"):
        return True
    return any(isinstance(s, dict) and s.get("used") for s in report.get("series") or [])


def evaluate_case(row: ManifestRow, record: dict[str, Any] | None, study: Any,
                  study_dir: Path, config: dict[str, Any], cfg: EvaluateConfig,
                  voxel_threshold: float) -> dict[str, Any]:
    """Model and baseline results of one case (decision, scores, voxel and lesion metrics)."""
    from screener.scoring import score_map, voxel_volume_ml

    report = (record or {}).get("report") or {}
    decision = report.get("decision") if record and record["status"] != "failed" else "failed"
    case: dict[str, Any] = {
        "case_id": row.study_id, "label": row.label, "pathology": row.pathology,
        "abnormal": LABELS.get(row.label), "decision": decision or "failed",
        "abnormality_score": report.get("abnormality_score") if _analysed(report) else None,
        "confidence": report.get("confidence"), "reasons": report.get("reasons") or [],
        "error": (record or {}).get("error"), "mask": str(row.mask) if row.mask else "",
        "report_path": str(study_dir / "report.json") if report else "", "notes": "",
        "model_voxel": None, "baseline_voxel": None, "brain_ml": None,
    }
    outputs = report.get("outputs") or {}
    mask = None
    if row.mask is not None:
        if row.mask.exists():
            mask = _load_nifti(row.mask)
        else:
            case["notes"] = "mask listed but not found"
    model_brain = None
    if outputs.get("brain_mask") and (study_dir / outputs["brain_mask"]).exists():
        model_brain = _load_nifti(study_dir / outputs["brain_mask"])
        # Brain-mask sanity: the model's brain volume (adult brains ~1,000-1,600 ml).
        case["brain_ml"] = round(float((model_brain[0] > 0.5).sum())
                                 * voxel_volume_ml(model_brain[1]), 1)
    amap = outputs.get("anomaly_map")
    if mask is not None and amap and (study_dir / amap).exists() and _analysed(report):
        scores, aff = _load_nifti(study_dir / amap)
        case["model_voxel"] = score_map(scores, aff, mask[0], mask[1], voxel_threshold,
                                        decision == "flagged")
    base = run_baseline(study, config, cfg.baseline, model_brain)
    case.update(baseline_decision=base.decision, baseline_score=base.score,
                baseline_reasons=base.reasons, baseline_brain_mask=base.brain_mask_source)
    if mask is not None and base.zmap is not None:
        thr = float(np.nextafter(np.float32(cfg.baseline.z_threshold), np.float32(np.inf)))
        case["baseline_voxel"] = score_map(base.zmap, base.affine, mask[0], mask[1], thr,
                                           base.decision == "flagged")
    return case


def _mean_ci(values: list[float], n_boot: int, seed: int) -> dict[str, Any]:
    v = np.asarray(values, float)
    if v.size == 0:
        return {"mean": None, "n": 0, "ci95": None}
    ci = None
    if v.size > 1 and n_boot > 0:
        rng = np.random.default_rng(seed)
        means = v[rng.integers(0, v.size, (n_boot, v.size))].mean(axis=1)
        ci = [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]
    return {"mean": float(v.mean()), "n": int(v.size), "ci95": ci,
            "ci_method": f"bootstrap over cases, {n_boot} resamples" if ci else None}


def aggregate(cases: list[dict[str, Any]], cfg: EvaluateConfig) -> dict[str, Any]:
    """Metrics of the model and the baseline over the labelled cases."""
    labelled = [c for c in cases if c["abnormal"] is not None]
    truth = [c["abnormal"] for c in labelled]
    out: dict[str, Any] = {"n_cases": len(cases), "n_labelled": len(labelled),
                           "unlabelled_excluded": len(cases) - len(labelled)}
    for name, dkey, skey, ckey, vkey in (
            ("model", "decision", "abnormality_score", "confidence", "model_voxel"),
            ("baseline", "baseline_decision", "baseline_score", None, "baseline_voxel")):
        study = study_level(truth, [c[dkey] for c in labelled], [c[skey] for c in labelled],
                            [c[ckey] if ckey else None for c in labelled],
                            n_boot=cfg.n_bootstrap, seed=cfg.seed, n_bins=cfg.calibration_bins)
        vox = [c[vkey] for c in cases if c[vkey] is not None]
        lesions = [les for v in vox for les in v["lesions"]]
        out[name] = {
            "study": study,
            "voxel": {
                "dice": _mean_ci([v["dice"] for v in vox if v["dice"] is not None],
                                 cfg.n_bootstrap, cfg.seed),
                "auprc": _mean_ci([v["auprc"] for v in vox if v["auprc"] is not None],
                                  cfg.n_bootstrap, cfg.seed),
                "cases_with_mask": len(vox)},
            "lesion": {
                "detection": proportion(sum(x["detected"] for x in lesions), len(lesions)),
                "by_diameter_mm": rate_by_bin([x["diameter_mm"] for x in lesions],
                                              [x["detected"] for x in lesions],
                                              cfg.lesion_size_edges_mm)},
        }
    return out


def _case_rows(cases: list[dict[str, Any]], out: Path) -> str:
    """cases.csv; mask and report paths relative to the output folder, so the table names no
    machine's directories and still resolves where it is copied along with its inputs."""
    import os

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CASE_COLUMNS), extrasaction="ignore")
    w.writeheader()
    for c in cases:
        row = dict(c)
        for key in ("mask", "report_path"):
            if row.get(key):
                row[key] = os.path.relpath(Path(row[key]).absolute(), out.absolute())
        row["reasons"] = "; ".join(str(r) for r in c.get("reasons") or [])
        for k, pre in (("model_voxel", ""), ("baseline_voxel", "baseline_")):
            v = c[k] or {}
            row[f"{pre}dice"] = v.get("dice")
            row[f"{pre}auprc"] = v.get("auprc")
            les = v.get("lesions") or []
            row["lesions"] = len(les) if les else row.get("lesions", "")
            row[f"{pre}lesions_detected"] = sum(x["detected"] for x in les) if les else ""
        w.writerow(row)
    return buf.getvalue()


def run_evaluate(manifest: str | Path, outdir: str | Path, config: dict[str, Any],
                 device: str = "auto") -> dict[str, Any]:
    """Screen a labelled set and write every evaluation output; returns metrics.json's content."""
    from screener.batch import run_batch
    from screener.eval_summary import write_outputs

    cfg = section(config, "evaluate", EvaluateConfig)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    src = Path(manifest)
    csv_path = folder_manifest(src, out / "manifest.csv") if src.is_dir() else src
    rows = read_manifest(csv_path)
    batch = run_batch([csv_path], out / "studies", config, workers=cfg.workers, device=device)
    by_case = {r["case_id"]: r for r in batch.records}
    tasks = {t.case.study_id: t for t in batch.tasks.values() if t.case is not None}
    thr = cfg.voxel_threshold
    if thr is None:
        thr = float((config.get("decide") or {}).get("voxel_threshold", 0.5))
    cases = []
    for row in rows:
        rec, task = by_case.get(row.study_id), tasks.get(row.study_id)
        study_dir = out / "studies" / (task.key if task else "")
        log.info("evaluate: case %d/%d", len(cases) + 1, len(rows))
        cases.append(evaluate_case(row, rec, task.study if task else None, study_dir, config,
                                   cfg, thr))
    metrics = aggregate(cases, cfg)
    metrics.update(schema_version="1", voxel_threshold=thr, settings=_settings(cfg),
                   source=str(manifest))
    write_json_atomic(out / "metrics.json", metrics)
    write_text_atomic(out / "cases.csv", _case_rows(cases, out))
    write_outputs(out, metrics, cases)
    return metrics


def _settings(cfg: EvaluateConfig) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(cfg)


def run_evaluate_cli(args: argparse.Namespace) -> int:
    """Entry point of `screener evaluate`."""
    config = load_config(args.config)
    if args.synthetic:
        from screener.synthetic_benchmark import run_synthetic_cli

        return run_synthetic_cli(args, config)
    if not args.manifest:
        print("screener evaluate: give MANIFEST (CSV or folder) or --synthetic N", file=sys.stderr)
        return 2
    metrics = run_evaluate(args.manifest, args.output, config, device=args.device)
    print((Path(args.output) / "summary.md").read_text(encoding="utf-8"))
    return 0 if metrics["n_cases"] else 1
