"""Stand-ins for discovery and the pipeline, so the batch machinery is tested on its own.

A fake study is a folder holding meta.json: {"uid", "accession", "kind", "score"} where kind is
normal | lesion | corrupt (indeterminate report) | crash (screen raises) | die (worker exits).
Configs point `batch.*` at the functions below ("test_batch_fakes:..."); the tests folder is
put on PYTHONPATH of worker processes.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from screener.types import Study

SECRET_ACCESSION = "ACC-SECRET-4711"


@dataclass
class FakeDiscovery:
    studies: list[Study] = field(default_factory=list)
    skipped: int = 0
    errors: list[Any] = field(default_factory=list)


def make_fake_study(root: Path, name: str, kind: str, score: float, uid: str | None = None) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "meta.json").write_text(json.dumps({"uid": uid or f"1.2.826.0.1.{abs(hash(name)) % 10**8}",
                                             "accession": SECRET_ACCESSION, "kind": kind,
                                             "score": score}))
    return d


def find_studies(inputs, config=None) -> FakeDiscovery:
    found = []
    for root in inputs:
        for meta in sorted(Path(root).rglob("meta.json")):
            m = json.loads(meta.read_text())
            found.append(Study(study_instance_uid=m["uid"], accession_number=m["accession"],
                               source=str(meta.parent)))
    return FakeDiscovery(studies=found)


def study_dir_name(study: Study) -> str:
    import hashlib

    return "study-" + hashlib.sha256(study.study_instance_uid.encode()).hexdigest()[:10]


def load_model(config, device="auto") -> dict:
    log = os.environ.get("FAKE_LOAD_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
    return {"pid": os.getpid()}


def screen_study(study: Study, outdir: Path, *, config: dict, model: Any = None) -> dict:
    meta = json.loads((Path(study.source) / "meta.json").read_text())
    assert model is not None and model["pid"] == os.getpid()
    delay = float(os.environ.get("FAKE_SCREEN_DELAY", "0"))
    if meta["kind"] == "crash":
        raise RuntimeError("synthetic failure inside screen_study")
    if meta["kind"] == "die":
        os._exit(3)
    out = Path(outdir) / study_dir_name(study)
    out.mkdir(parents=True)
    # Written slowly and non-atomically on purpose: the batch's staging must hide it.
    with open(out / "anomaly_map.bin", "wb") as fh:
        for _ in range(5):
            fh.write(b"\0" * 1000)
            fh.flush()
            time.sleep(delay / 5)
    decision = {"normal": "negative", "lesion": "flagged", "corrupt": "indeterminate"}[meta["kind"]]
    findings = ([{"volume_ml": 2.5, "max_diameter_mm": 18.0, "centroid_ras_mm": [1, 2, 3]},
                 {"volume_ml": 0.5, "max_diameter_mm": 9.0, "centroid_ras_mm": [4, 5, 6]}]
                if decision == "flagged" else [])
    report = {"schema_version": "1",
              "study": {"study_instance_uid": study.study_instance_uid,
                        "accession_number": study.accession_number, "source": "fake"},
              "decision": decision,
              "abnormality_score": None if decision == "indeterminate" else meta["score"],
              "confidence": 0.8, "findings": findings,
              "reasons": ["corrupt pixel data"] if decision == "indeterminate" else [],
              "outputs": {"anomaly_map": "anomaly_map.bin"}}
    (out / "report.json").write_text(json.dumps(report))
    return report


def fake_config(base: dict | None = None) -> dict:
    from screener.config import load_config

    cfg = dict(base or load_config())
    cfg["batch"] = dict(cfg.get("batch") or {}, screen_function="test_batch_fakes:screen_study",
                        model_loader="test_batch_fakes:load_model",
                        study_dir_name="test_batch_fakes:study_dir_name",
                        discover_function="test_batch_fakes:find_studies", progress=False)
    return cfg


# ---- DICOM studies for the dask and kill tests --------------------------------------------

PATIENT_NAME = "Secret^Patient"


def make_dicom_study(root: Path, name: str, *, bright: bool, corrupt: str | None = None,
                     shape: tuple[int, int, int] = (24, 24, 16), seed: int = 0,
                     head: Any = None) -> Path:
    """Write one single-series DICOM study into root/name.

    bright: a block of high signal (the toy screen flags it). corrupt: None | "truncated"
    (one slice's pixel data cut short) | "missing" (3 middle slices deleted) | "garbage" (every
    file's pixel data overwritten by a non-image byte pattern of the wrong length).
    head: optional (data, affine) of a realistic head (used instead of the toy block volume).
    """
    import numpy as np
    import pydicom

    from screener.io.dicom_writer import StudyIdentity, write_mr_series

    rng = np.random.default_rng(seed)
    if head is not None:
        data, affine = head
    else:
        data = rng.uniform(100, 200, shape).astype(np.float32)
        if bright:
            data[8:14, 8:14, 5:10] = 900.0
        affine = np.diag([2.0, 2.0, 4.0, 1.0])
    ident = StudyIdentity(patient_name=PATIENT_NAME, patient_id=f"PID-{name}",
                          accession_number=SECRET_ACCESSION)
    out = root / name
    paths = write_mr_series(data, affine, out, identity=ident, contrast="FLAIR")
    if corrupt == "truncated":
        p = paths[len(paths) // 2]
        raw = p.read_bytes()
        p.write_bytes(raw[: len(raw) - 300])
    elif corrupt == "missing":
        for p in paths[len(paths) // 2 - 1: len(paths) // 2 + 2]:
            p.unlink()
    elif corrupt == "garbage":
        for p in paths:
            ds = pydicom.dcmread(p)
            ds.PixelData = b"\xde\xad" * 7
            ds.save_as(p)
    return out


def toy_screen(study: Study, outdir: Path, *, config: dict, model: Any = None) -> dict:
    """A stand-in screen over real io: indeterminate when a series cannot be read or carries
    a blocking geometry warning; else flagged when the brightest voxel exceeds 500."""
    from screener.errors import InputError
    from screener.io import load_series
    from screener.pipeline import study_dir_name as real_dir_name

    delay = float(os.environ.get("FAKE_SCREEN_DELAY", "0"))
    time.sleep(delay)
    reasons, peak = [], 0.0
    for s in study.series:
        if s.warnings:
            reasons.append(f"geometry: {s.warnings[0].split(':')[0]}")
            continue
        try:
            peak = max(peak, float(load_series(s, config).data.max()))
        except InputError as exc:
            reasons.append(f"unreadable: {type(exc).__name__}")
    decision = "indeterminate" if reasons else ("flagged" if peak > 500 else "negative")
    out = Path(outdir) / real_dir_name(study)
    out.mkdir(parents=True)
    report = {"schema_version": "1", "decision": decision,
              "abnormality_score": None if reasons else min(1.0, peak / 1000),
              "confidence": 0.9, "reasons": reasons, "findings": [],
              "study": {"study_instance_uid": study.study_instance_uid,
                        "accession_number": study.accession_number},
              "outputs": {}}
    (out / "report.json").write_text(json.dumps(report))
    return report


def toy_config() -> dict:
    """Real discovery and dir names, toy screen."""
    from screener.config import load_config

    cfg = load_config()
    cfg["batch"] = dict(cfg["batch"], screen_function="test_batch_fakes:toy_screen",
                        model_loader="test_batch_fakes:load_model", progress=False)
    return cfg
