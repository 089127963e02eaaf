"""Stand-ins for discovery and screening whose studies run too long (for the batch time limit).

A fake study is a folder with meta.json {"uid", "kind"}: kind "normal" is screened at once;
"python_loop" keeps running Python code for 60 s; "c_call" blocks in one C call for 60 s.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from screener.types import Study


@dataclass
class Found:
    studies: list[Study] = field(default_factory=list)
    skipped: int = 0
    errors: list[Any] = field(default_factory=list)


def make(root: Path, name: str, kind: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "meta.json").write_text(json.dumps({"uid": f"1.2.3.{abs(hash(name)) % 10**6}",
                                                       "kind": kind}))


def find_studies(inputs, config=None) -> Found:
    out = Found()
    for root in inputs:
        for meta in sorted(Path(root).rglob("meta.json")):
            m = json.loads(meta.read_text())
            out.studies.append(Study(study_instance_uid=m["uid"], source=str(meta.parent)))
    return out


def study_dir_name(study: Study) -> str:
    return "study-" + hashlib.sha256(study.study_instance_uid.encode()).hexdigest()[:10]


def load_model(config, device="auto") -> dict:
    return {}


def screen_study(study: Study, outdir: Path, *, config: dict, model: Any = None) -> dict:
    kind = json.loads((Path(study.source) / "meta.json").read_text())["kind"]
    folder = Path(outdir) / study_dir_name(study)
    folder.mkdir(parents=True)
    (folder / "partial.bin").write_bytes(b"\0" * 100)
    if kind == "python_loop":
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            try:
                time.sleep(0.02)
            except Exception:  # like the pipeline: ordinary failures become a report
                pass
    elif kind == "c_call":
        time.sleep(60)
    report = {"decision": "negative", "abnormality_score": 0.1, "reasons": [],
              "study": {"study_instance_uid": study.study_instance_uid}}
    (folder / "report.json").write_text(json.dumps(report))
    return report
