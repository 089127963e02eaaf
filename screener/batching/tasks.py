"""Turn batch inputs (DICOM trees, NIfTI study folders, manifest CSVs) into one task per study.

A manifest CSV has the columns of `realdata-dev/cases.csv`:
`study_id,label,pathology,inputs,mask,notes`, where `inputs` is a `;`-separated list of
files of one study and paths are relative to the CSV. Rows keep their `study_id`, label and
mask so that `screener evaluate` can score the same tasks the batch ran.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from screener.types import Study

MANIFEST_COLUMNS = ("study_id", "label", "inputs")


def uid_hash(uid: str) -> str:
    """Short one-way hash of a UID, the only study reference that goes into logs."""
    return hashlib.sha256(uid.encode("utf-8")).hexdigest()[:12]


@dataclass
class ManifestRow:
    """One row of a manifest CSV, paths resolved against the CSV's folder."""

    study_id: str
    label: str
    inputs: list[Path]
    mask: Path | None = None
    pathology: str = ""
    notes: str = ""


@dataclass
class BatchTask:
    """One study to screen: the unit of work sent to a worker.

    `key` is the study's output folder name (OUTDIR/<key>/report.json).
    """

    key: str
    study: Study | None
    uid_hash: str
    case: ManifestRow | None = None
    # Set when the study could not even be discovered (manifest row without a study): the
    # task is recorded as failed without being sent to a worker.
    discovery_error: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Read a manifest CSV; raise ValueError naming the file and row on a malformed row."""
    p = Path(path)
    base = p.resolve().parent
    rows: list[ManifestRow] = []
    with open(p, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{p}: manifest lacks column(s) {missing}")
        seen: set[str] = set()
        for i, row in enumerate(reader, start=2):
            sid = (row.get("study_id") or "").strip()
            if not sid:
                raise ValueError(f"{p}:{i}: empty study_id")
            if sid in seen:
                raise ValueError(f"{p}:{i}: duplicate study_id {sid!r}")
            seen.add(sid)
            inputs = [base / s.strip() for s in (row.get("inputs") or "").split(";") if s.strip()]
            mask = (row.get("mask") or "").strip()
            rows.append(ManifestRow(study_id=sid, label=(row.get("label") or "").strip().lower(),
                                    inputs=inputs, mask=base / mask if mask else None,
                                    pathology=(row.get("pathology") or "").strip(),
                                    notes=(row.get("notes") or "").strip()))
    return rows


def is_manifest(path: str | Path) -> bool:
    p = Path(path)
    return p.is_file() and p.suffix.lower() == ".csv"


def collect_tasks(
    roots: Sequence[str | Path],
    config: dict[str, Any],
    *,
    find_studies: Callable[..., Any],
    dir_name: Callable[[Study], str],
) -> tuple[list[BatchTask], list[dict[str, Any]]]:
    """Discover every study in `roots` and make one task per study.

    Args:
        roots: DICOM files/folders, folders of NIfTI study folders, or manifest CSVs.
        config: full configuration (the io section is passed to discovery).
        find_studies: `screener.io.find_studies` (injectable for tests).
        dir_name: output folder name of a study (`screener.pipeline.study_dir_name`).

    Returns:
        (tasks, discovery problems). Problems are file-level errors of discovery (unreadable
        files that belong to no study), without patient identifiers.
    """
    tasks: list[BatchTask] = []
    problems: list[dict[str, Any]] = []
    plain: list[Path] = []
    for root in roots:
        if is_manifest(root):
            for row in read_manifest(root):
                tasks.append(_task_for_row(row, config, find_studies, dir_name))
        else:
            # DICOM trees and NIfTI study folders: discovery groups NIfTI files by folder
            # (one folder = one study, BraTS/BIDS style) and DICOM by StudyInstanceUID.
            plain.append(Path(root))
    if plain:
        tasks.extend(_tasks_for(find_studies(plain, config), dir_name, problems))
    return _dedupe(tasks), problems


def _tasks_for(discovery: Any, dir_name: Callable[[Study], str],
               problems: list[dict[str, Any]]) -> list[BatchTask]:
    """One task per discovered study, plus one failed task per folder whose files were all
    unreadable (a study that never formed must still show up as failed, not vanish)."""
    tasks = [BatchTask(key=dir_name(s), study=s, uid_hash=uid_hash(s.study_instance_uid))
             for s in discovery.studies]
    used_dirs = {str(Path(f).parent) for s in discovery.studies for info in s.series
                 for f in info.source_files}
    by_dir: dict[str, list[Any]] = {}
    for err in getattr(discovery, "errors", []) or []:
        path = str(getattr(err, "path", ""))
        reason = str(getattr(err, "reason", err))
        if path and reason.startswith(path):
            reason = reason[len(path):].lstrip(": ")  # the folder is given once, below
        kind = str(getattr(err, "kind", type(err).__name__))
        problems.append({"stage": "discover", "error": kind, "message": reason[:300]})
        # Group by the folder holding the file (an input that is itself missing or a folder
        # stands for itself).
        p = Path(path)
        folder = str(p.parent) if path and p.is_file() else path
        by_dir.setdefault(folder, []).append((kind, reason))
    for folder, errs in sorted(by_dir.items()):
        if folder in used_dirs:
            continue  # the study formed without these files; QC judges what is missing
        key = "unreadable-" + uid_hash(folder)
        tasks.append(BatchTask(
            key=key, study=None, uid_hash=uid_hash(folder),
            discovery_error={"stage": "discover", "error": errs[0][0],
                             "message": f"{len(errs)} file(s) unreadable, no study formed: "
                                        f"{errs[0][1]}"[:400],
                             "where": folder}))
    return tasks


def _task_for_row(row: ManifestRow, config: dict[str, Any], find_studies: Callable[..., Any],
                  dir_name: Callable[[Study], str]) -> BatchTask:
    key = "case-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in row.study_id)
    missing = [p for p in row.inputs if not p.exists()]
    err: str | None = None
    studies: list[Study] = []
    if not row.inputs:
        err = "manifest row lists no input files"
    elif missing:
        err = f"{len(missing)} input file(s) not found"
    else:
        try:
            studies = list(find_studies(row.inputs, config).studies)
        except Exception as exc:  # noqa: BLE001 - any discovery failure is recorded, not raised
            err = f"{type(exc).__name__}: {exc}"[:300]
        if err is None and len(studies) != 1:
            err = f"inputs form {len(studies)} studies, expected exactly 1"
    if err is not None:
        return BatchTask(key=key, study=None, uid_hash=uid_hash(row.study_id), case=row,
                         discovery_error={"stage": "discover", "error": "InputError",
                                          "message": err, "where": "manifest row"})
    study = studies[0]
    return BatchTask(key=dir_name(study), study=study, uid_hash=uid_hash(study.study_instance_uid),
                     case=row)


def _dedupe(tasks: list[BatchTask]) -> list[BatchTask]:
    """Drop the same study found twice; give colliding output names a numbered suffix."""
    out: list[BatchTask] = []
    seen_uid: set[tuple[str, str]] = set()
    used: set[str] = set()
    for t in tasks:
        ident = (t.study.study_instance_uid if t.study else "", t.case.study_id if t.case else "")
        if t.study is not None and ident in seen_uid:
            continue
        seen_uid.add(ident)
        key, n = t.key, 2
        while key in used:
            key, n = f"{t.key}-{n}", n + 1
        t.key = key
        used.add(key)
        out.append(t)
    return out
