"""`screener evaluate` on a tiny generated set whose every figure is worked out by hand.

Cases (truth, model decision, score, confidence):
  c1 abnormal flagged 0.9 0.8 (mask)   c2 abnormal negative 0.3 0.6 (mask)
  c3 normal negative 0.3 0.7 (no mask) c4 normal flagged 0.6 0.55 (mask listed, file missing)
  c5 abnormal indeterminate (lesion, no mask)
Model map: the 1 mm lesion block [4:8,4:8,2:6]; expert mask (2 mm grid) covers [3:7,3:7,1:5]:
overlap 3x3x3 = 27 of 64 + 64 voxels -> Dice 54/128.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from test_evaluate_fakes import evaluate_config, make_case, make_mask

from screener.evaluate import run_evaluate

DICE = 54 / 128
# AP of the model map: threshold 0.9 -> P = R = 27/64; threshold 0.1 -> P = 64/2048, R = 1.
AUPRC = (27 / 64) ** 2 + (1 - 27 / 64) * 64 / 2048


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = root / "data"
    spec = {"c1": (True, "flagged", 0.9, 0.8), "c2": (True, "negative", 0.3, 0.6),
            "c3": (False, "negative", 0.3, 0.7), "c4": (False, "flagged", 0.6, 0.55),
            "c5": (True, "indeterminate", None, None)}
    rows = ["study_id,label,pathology,inputs,mask,notes"]
    for i, (name, (lesion, dec, score, conf)) in enumerate(spec.items()):
        img = make_case(data, name, lesion=lesion, decision=dec, score=score, confidence=conf,
                        seed=i)
        mask = ""
        if name in ("c1", "c2"):
            mask = str(make_mask(data / f"{name}_mask.nii.gz").relative_to(root))
        elif name == "c4":
            mask = "data/missing_mask.nii.gz"
        rows.append(f"{name},{'abnormal' if lesion else 'normal'},test,"
                    f"{img.relative_to(root)},{mask},")
    manifest = root / "cases.csv"
    manifest.write_text("\n".join(rows) + "\n")
    out = root / "out"
    metrics = run_evaluate(manifest, out, evaluate_config())
    return metrics, out


def test_study_level_model(evaluated):
    m = evaluated[0]["model"]["study"]
    assert m["decisions"] == {"negative": 2, "flagged": 2, "indeterminate": 1, "failed": 0}
    op = m["operating_point"]
    assert op["confusion"] == {"tp": 2, "fp": 1, "tn": 1, "fn": 1}
    assert op["sensitivity"]["value"] == pytest.approx(2 / 3)
    assert op["specificity"]["value"] == pytest.approx(1 / 2)
    assert op["ppv"]["value"] == pytest.approx(2 / 3) and op["npv"]["value"] == pytest.approx(1 / 2)
    # Pairs (0.9,0.3)=1 (0.9,0.6)=1 (0.3,0.3)=1/2 (0.3,0.6)=0.
    assert m["ranking"]["auroc"]["value"] == pytest.approx(0.625)
    assert m["ranking"]["average_precision"]["value"] == pytest.approx(0.75)
    assert m["calibration"]["ece"] == pytest.approx(1.65 / 4)
    assert m["indeterminate_rate"]["k"] == 1 and m["workload_reduction"]["k"] == 2


def test_voxel_and_lesion_level(evaluated):
    metrics = evaluated[0]
    v = metrics["model"]["voxel"]
    assert v["cases_with_mask"] == 2
    assert v["dice"]["mean"] == pytest.approx(DICE) and v["dice"]["n"] == 2
    assert v["auprc"]["mean"] == pytest.approx(AUPRC)
    les = metrics["model"]["lesion"]
    assert (les["detection"]["k"], les["detection"]["n"]) == (1, 2)  # c2 not flagged
    bins = {(r["lo"], r["hi"]): (r["k"], r["n"]) for r in les["by_diameter_mm"]}
    assert bins[(3.0, 5.0)] == (1, 2)  # 0.064 ml -> 4.96 mm sphere-equivalent


def test_baseline_same_run(evaluated):
    b = evaluated[0]["baseline"]
    s = b["study"]
    assert s["decisions"] == {"negative": 2, "flagged": 3, "indeterminate": 0, "failed": 0}
    assert s["operating_point"]["sensitivity"]["value"] == 1.0
    assert s["operating_point"]["specificity"]["value"] == 1.0
    assert s["ranking"]["auroc"]["value"] == 1.0 and s["ranking"]["n"] == 5
    assert b["voxel"]["dice"]["mean"] == pytest.approx(DICE)
    assert (b["lesion"]["detection"]["k"], b["lesion"]["detection"]["n"]) == (2, 2)


def test_outputs_written(evaluated):
    out = evaluated[1]
    for name in ("metrics.json", "cases.csv", "roc.png", "sensitivity_by_size.png",
                 "calibration.png", "summary.md"):
        assert (out / name).stat().st_size > 0, name
    rows = {r["case_id"]: r for r in csv.DictReader(open(out / "cases.csv"))}
    assert rows["c4"]["notes"] == "mask listed but not found" and rows["c4"]["dice"] == ""
    assert float(rows["c1"]["dice"]) == pytest.approx(DICE)
    assert rows["c5"]["decision"] == "indeterminate"
    # Paths in the table are relative to it and resolve from there.
    for key in ("mask", "report_path"):
        path = rows["c1"][key]
        assert path and not Path(path).is_absolute() and (out / path).is_file(), key
    summary = (out / "summary.md").read_text()
    assert "FLAIR-threshold baseline" in summary and "0.625" in summary
    assert json.loads((out / "metrics.json").read_text())["n_cases"] == 5


def test_all_negative_set(tmp_path):
    data = tmp_path / "data"
    rows = ["study_id,label,pathology,inputs,mask,notes"]
    for i in range(3):
        img = make_case(data, f"n{i}", lesion=False, decision="negative", score=0.1 * i,
                        confidence=0.9, seed=10 + i)
        rows.append(f"n{i},normal,,{img.relative_to(tmp_path)},,")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    m = run_evaluate(tmp_path / "cases.csv", tmp_path / "out", evaluate_config())
    s = m["model"]["study"]
    assert s["operating_point"]["sensitivity"]["value"] is None
    assert s["operating_point"]["specificity"]["value"] == 1.0
    assert s["ranking"]["auroc"]["value"] is None
    assert m["model"]["voxel"]["dice"]["mean"] is None and m["model"]["lesion"]["detection"]["n"] == 0
    assert (tmp_path / "out" / "roc.png").exists() and (tmp_path / "out" / "summary.md").exists()


def test_model_brain_mask_volume_and_baseline_mask(tmp_path):
    """Brain-mask sanity per case (brain_ml), and the baseline masks with the model's brain."""
    img = make_case(tmp_path / "data", "b0", lesion=True, decision="flagged", score=0.9,
                    confidence=0.9, seed=3)
    spec = json.loads((img.parent / "fake_screen.json").read_text())
    (img.parent / "fake_screen.json").write_text(json.dumps({**spec, "brain_mask": True}))
    (tmp_path / "cases.csv").write_text("study_id,label,pathology,inputs,mask,notes\n"
                                        f"b0,abnormal,,{img.relative_to(tmp_path)},,\n")
    run_evaluate(tmp_path / "cases.csv", tmp_path / "out", evaluate_config())
    row = next(csv.DictReader(open(tmp_path / "out" / "cases.csv")))
    assert float(row["brain_ml"]) == pytest.approx(12 * 12 * 8 / 1000.0, abs=0.05)
    assert row["baseline_brain_mask"] == "model"


def test_benchmark_intervals_and_pooling():
    from screener.synthetic_benchmark import pooled_sensitivity_by_diameter, with_intervals

    table = {"schema_version": "1", "seed": 7, "score_threshold": 0.4, "model": {},
             "cells": [{"diameter_mm": 5.0, "slice_thickness_mm": 3.0, "kind": "mass",
                        "contrast": "FLAIR", "n": 10, "detected": 8, "sensitivity": 0.8},
                       {"diameter_mm": 5.0, "slice_thickness_mm": 1.0, "kind": "mass",
                        "contrast": "T1", "n": 2, "detected": 0, "sensitivity": 0.0}],
             "specificity": {"n": 0, "negative": 0, "value": None}}
    t = with_intervals(table)
    assert t["cells"][0]["ci95"] == pytest.approx([0.4902, 0.9433], abs=1e-4)
    assert t["specificity"]["ci95"] is None
    pooled = pooled_sensitivity_by_diameter(t)
    assert (pooled[5.0]["k"], pooled[5.0]["n"]) == (8, 12)


def test_folder_manifest(tmp_path):
    import nibabel as nib
    import numpy as np

    from screener.batching.tasks import read_manifest
    from screener.evaluate import folder_manifest

    for name, val in (("p1", 1), ("p2", 0)):
        d = tmp_path / "brats" / name
        d.mkdir(parents=True)
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), str(d / "flair.nii.gz"))
        seg = np.zeros((4, 4, 4), np.uint8)
        seg[1, 1, 1] = val
        nib.save(nib.Nifti1Image(seg, np.eye(4)), str(d / f"{name}_seg.nii.gz"))
    rows = read_manifest(folder_manifest(tmp_path / "brats", tmp_path / "m.csv"))
    assert [(r.study_id, r.label, len(r.inputs), r.mask.name) for r in rows] == [
        ("p1", "abnormal", 1, "p1_seg.nii.gz"), ("p2", "normal", 1, "p2_seg.nii.gz")]
