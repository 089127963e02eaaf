"""Stand-ins for the screening pipeline, used to test the service's plumbing on its own.

They keep the real interfaces (`find_studies(inputs, config) -> .studies`, `screen_study(study,
outdir, *, config, model) -> report`, `study_dir_name(study)`) and record every call in
OUTDIR/_fake_calls.log (one line per screening, fsynced) so tests can count screenings
independently of the service's own bookkeeping. Behaviour is set by environment variables:
FAKE_SCREEN_DELAY_S (seconds per study), FAKE_OUTPUTS=1 (write an SR and a "SEG" object),
FAKE_CRASH=1 (the process dies), FAKE_RAISE=1 (screen_study raises).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from screener.types import SeriesInfo, Study

CALLS_LOG = "_fake_calls.log"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


@dataclass
class FakeDiscovery:
    studies: list[Study] = field(default_factory=list)
    skipped: int = 0
    errors: list[Any] = field(default_factory=list)


def find_studies(inputs: list[str | Path], config: dict | None = None) -> FakeDiscovery:
    import pydicom

    studies: dict[str, Study] = {}
    series: dict[str, SeriesInfo] = {}
    found = FakeDiscovery()
    for root in inputs:
        for path in sorted(Path(root).rglob("*.dcm")):
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception as exc:  # noqa: BLE001
                found.errors.append(str(exc))
                continue
            st = studies.setdefault(str(ds.StudyInstanceUID), Study(str(ds.StudyInstanceUID)))
            key = str(ds.SeriesInstanceUID)
            if key not in series:
                series[key] = SeriesInfo(str(ds.StudyInstanceUID), key)
                st.series.append(series[key])
            series[key].source_files.append(path)
            series[key].sop_instance_uids.append(str(ds.SOPInstanceUID))
    found.studies = list(studies.values())
    return found


def load_model(config: dict, device: str = "auto") -> str:
    return "fake-model"


def study_dir_name(study: Study) -> str:
    return "fake-" + hashlib.sha256(study.study_instance_uid.encode()).hexdigest()[:12]


def _result_object(template: Path, path: Path, series_number: int, text: str) -> None:
    """A minimal Basic Text SR in the study of `template` (stands in for SR and SEG)."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    src = pydicom.dcmread(template, stop_before_pixels=True)
    ds = Dataset()
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
               "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName"):
        setattr(ds, kw, src.get(kw, ""))
    ds.SOPClassUID = BASIC_TEXT_SR
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = 1
    ds.Manufacturer = "screener-fake"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ContentDate, ds.ContentTime = "20260101", "120000"
    ds.ConceptNameCodeSequence = [Dataset()]
    ds.ConceptNameCodeSequence[0].CodeValue = "18748-4"
    ds.ConceptNameCodeSequence[0].CodingSchemeDesignator = "LN"
    ds.ConceptNameCodeSequence[0].CodeMeaning = text
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def screen_study(study: Study, outdir: Path, *, config: dict, model: Any = None) -> dict:
    if os.environ.get("FAKE_CRASH") == "1":
        os._exit(3)  # a decoder segfault, say
    if os.environ.get("FAKE_RAISE") == "1":
        raise RuntimeError("boom")
    delay = float(os.environ.get("FAKE_SCREEN_DELAY_S", "0") or 0)
    if delay:
        time.sleep(delay)
    n = sum(len(s.source_files) for s in study.series)
    out = Path(outdir) / study_dir_name(study)
    out.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, Any] = {"anomaly_map": None, "sr": None, "seg": None, "overlay": None}
    if os.environ.get("FAKE_OUTPUTS") == "1" and n:
        first = study.series[0].source_files[0]
        _result_object(first, out / "sr.dcm", 9901, "fake screening SR")
        _result_object(first, out / "seg.dcm", 9902, "fake screening SEG")
        outputs.update(sr="sr.dcm", seg="seg.dcm")
    report = {"schema_version": "1", "decision": "flagged", "abnormality_score": 0.9,
              "confidence": 0.8, "reasons": ["fake"], "instances": n, "model": str(model),
              "study": {"study_instance_uid": study.study_instance_uid}, "outputs": outputs}
    (out / "report.json").write_text(json.dumps(report))
    with open(Path(outdir) / CALLS_LOG, "a", encoding="utf-8") as fh:
        fh.write(f"{study.study_instance_uid} {n}\n")
        fh.flush()
        os.fsync(fh.fileno())
    return report


def calls(outdir: Path) -> list[tuple[str, int]]:
    """(study_uid, instances) of every completed fake screening."""
    p = Path(outdir) / CALLS_LOG
    if not p.exists():
        return []
    return [(a, int(b)) for a, b in (line.split() for line in p.read_text().splitlines() if line)]
