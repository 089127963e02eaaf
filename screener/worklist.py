"""Reading-room worklist from batch records: worklist.csv and worklist.json.

Order: flagged studies by descending abnormality score, then studies that need a reader
because they were not assessed (indeterminate, then failed), then negative studies (the
least certain negatives first, i.e. descending score). Ties keep a stable order by key.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from screener.atomic import write_json_atomic, write_text_atomic

COLUMNS = ("rank", "decision", "abnormality_score", "confidence", "study_instance_uid",
           "accession_number", "largest_finding", "reasons", "report_path", "case_id", "key")
GROUP_ORDER = {"flagged": 0, "indeterminate": 1, "failed": 2, "negative": 3}


def _score(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def largest_finding(report: dict[str, Any]) -> dict[str, Any] | None:
    """The finding with the largest volume (volume_ml, max_diameter_mm, centroid_ras_mm ...)."""
    findings = [f for f in report.get("findings") or [] if isinstance(f, dict)]
    if not findings:
        return None
    return max(findings, key=lambda f: _score(f.get("volume_ml")) or 0.0)


def describe_finding(finding: dict[str, Any] | None) -> str:
    """Short text of a finding for the CSV: '1.23 ml, 14.0 mm at (x, y, z) RAS mm'."""
    if not finding:
        return ""
    parts = []
    if _score(finding.get("volume_ml")) is not None:
        parts.append(f"{finding['volume_ml']:.2f} ml")
    if _score(finding.get("max_diameter_mm")) is not None:
        parts.append(f"{finding['max_diameter_mm']:.1f} mm")
    text = ", ".join(parts)
    c = finding.get("centroid_ras_mm")
    if isinstance(c, (list, tuple)) and len(c) == 3:
        text += f" at ({c[0]:.0f}, {c[1]:.0f}, {c[2]:.0f}) RAS mm"
    return text


def row_from_record(record: dict[str, Any], outdir: Path) -> dict[str, Any]:
    """One worklist row from a batch record (a done/skipped report, or a failure)."""
    report = record.get("report") or {}
    study = report.get("study") or {}
    if record.get("status") == "failed" or not report:
        err = record.get("error") or {}
        reasons = [f"failed at {err.get('stage', '?')}: {err.get('error', '')} "
                   f"{err.get('message', '')}".strip()]
        decision, score, conf = "failed", None, None
        report_path = ""
    else:
        decision = report.get("decision")
        score, conf = _score(report.get("abnormality_score")), _score(report.get("confidence"))
        reasons = [str(r) for r in report.get("reasons") or []]
        report_path = str(Path(record["key"]) / "report.json")
    finding = largest_finding(report) if report else None
    return {
        "decision": decision, "abnormality_score": score, "confidence": conf,
        "study_instance_uid": study.get("study_instance_uid", record.get("study_instance_uid", "")),
        "accession_number": study.get("accession_number", record.get("accession_number", "")),
        "largest_finding": finding, "reasons": reasons, "report_path": report_path,
        "case_id": record.get("case_id") or "", "key": record["key"],
    }


def order_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sort rows into reading-room order and number them (rank 1 = read first)."""
    def sort_key(r: dict[str, Any]) -> tuple[int, float, str]:
        s = _score(r.get("abnormality_score"))
        return (GROUP_ORDER.get(r.get("decision") or "failed", 2),
                -s if s is not None else math.inf, str(r.get("key")))

    ordered = sorted(rows, key=sort_key)
    for i, r in enumerate(ordered, start=1):
        r["rank"] = i
    return ordered


def write_worklist(rows: list[dict[str, Any]], outdir: str | Path) -> tuple[Path, Path]:
    """Write ordered rows as OUTDIR/worklist.csv and OUTDIR/worklist.json (atomically)."""
    out = Path(outdir)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        flat = dict(r)
        flat["largest_finding"] = describe_finding(r.get("largest_finding"))
        flat["reasons"] = "; ".join(r.get("reasons") or [])
        for k in ("abnormality_score", "confidence"):
            flat[k] = "" if r.get(k) is None else f"{r[k]:.4f}"
        writer.writerow(flat)
    csv_path = write_text_atomic(out / "worklist.csv", buf.getvalue())
    json_path = write_json_atomic(out / "worklist.json",
                                  {"schema_version": "1", "order": list(GROUP_ORDER),
                                   "studies": [{k: r.get(k) for k in COLUMNS} for r in rows]})
    return csv_path, json_path
