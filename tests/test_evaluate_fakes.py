"""Stand-in pipeline for evaluate tests: real NIfTI discovery, decisions fixed per case.

Each study folder holds FLAIR.nii.gz and fake_screen.json {decision, score, confidence}; the
anomaly map is 0.9 where the image is > 50 (the lesion block) and 0.1 elsewhere.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from screener.types import Study


def study_dir_name(study: Study) -> str:
    return "s-" + hashlib.sha256(study.study_instance_uid.encode()).hexdigest()[:10]


def load_model(config, device="auto") -> dict:
    return {"fake": True}


def screen_study(study: Study, outdir: Path, *, config: dict, model: Any = None) -> dict:
    src = Path(study.series[0].source_files[0])
    spec = json.loads((src.parent / "fake_screen.json").read_text())
    img = nib.load(str(src))
    data = np.asarray(img.dataobj, dtype=np.float32)
    out = Path(outdir) / study_dir_name(study)
    out.mkdir(parents=True)
    prob = np.where(data > 50, 0.9, 0.1).astype(np.float32)
    nib.save(nib.Nifti1Image(prob, img.affine), str(out / "anomaly_map.nii.gz"))
    report = {"schema_version": "1", "decision": spec["decision"],
              "abnormality_score": spec.get("score"), "confidence": spec.get("confidence"),
              "study": {"study_instance_uid": study.study_instance_uid, "accession_number": ""},
              "findings": [], "reasons": [],
              "outputs": {"anomaly_map": "anomaly_map.nii.gz"}}
    if spec.get("brain_mask"):  # the model's brain mask: the head's non-zero block
        nib.save(nib.Nifti1Image((data > 5).astype(np.float32), img.affine),
                 str(out / "brain_mask.nii.gz"))
        report["outputs"]["brain_mask"] = "brain_mask.nii.gz"
    (out / "report.json").write_text(json.dumps(report))
    return report


def make_case(root: Path, name: str, *, lesion: bool, decision: str, score, confidence,
              seed: int) -> Path:
    """16x16x8 1 mm head: zero border, brain values U(10, 20), lesion block [4:8,4:8,2:6]=100."""
    d = root / name
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    data = np.zeros((16, 16, 8), np.float32)
    data[2:14, 2:14, :] = rng.uniform(10, 20, (12, 12, 8))
    if lesion:
        data[4:8, 4:8, 2:6] = 100.0
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(d / "FLAIR.nii.gz"))
    (d / "fake_screen.json").write_text(json.dumps({"decision": decision, "score": score,
                                                    "confidence": confidence}))
    return d / "FLAIR.nii.gz"


def make_mask(path: Path) -> Path:
    """Mask on a 2 mm grid offset by -0.5 mm: covers 1 mm voxels [3:7, 3:7, 1:5] (no ties)."""
    m = np.zeros((8, 8, 4), np.uint8)
    m[2:4, 2:4, 1:3] = 2  # a non-1 label: any label > 0 is abnormal
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = -0.5
    nib.save(nib.Nifti1Image(m, aff), str(path))
    return path


def evaluate_config() -> dict:
    from screener.config import load_config

    cfg = load_config()
    cfg["batch"] = dict(cfg["batch"], screen_function="test_evaluate_fakes:screen_study",
                        model_loader="test_evaluate_fakes:load_model",
                        study_dir_name="test_evaluate_fakes:study_dir_name", progress=False)
    ev = dict(cfg["evaluate"], workers=0, n_bootstrap=50, voxel_threshold=0.5)
    ev["baseline"] = dict(ev["baseline"], min_component_ml=0.01, flag_volume_ml=0.05)
    cfg["evaluate"] = ev
    return cfg
