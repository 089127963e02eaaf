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
