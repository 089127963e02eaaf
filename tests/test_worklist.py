"""Reading-room order and the worklist files."""

from __future__ import annotations

import csv
import json

from screener.worklist import order_rows, row_from_record, write_worklist


def _rec(key, decision, score, status="done"):
    report = None if status == "failed" else {
        "decision": decision, "abnormality_score": score, "confidence": 0.7,
        "study": {"study_instance_uid": f"uid-{key}", "accession_number": f"acc-{key}"},
        "findings": [{"volume_ml": 1.0, "max_diameter_mm": 12.0, "centroid_ras_mm": [0, 0, 0]},
                     {"volume_ml": 3.0, "max_diameter_mm": 20.0, "centroid_ras_mm": [1, 2, 3]}]
        if decision == "flagged" else [], "reasons": ["r1"]}
    return {"key": key, "status": status, "report": report,
            "error": {"stage": "screen", "error": "RuntimeError", "message": "boom"}
            if status == "failed" else None}


def test_order_and_files(tmp_path):
    recs = [_rec("n1", "negative", 0.1), _rec("f1", "flagged", 0.6), _rec("i1", "indeterminate", None),
            _rec("x1", None, None, status="failed"), _rec("f2", "flagged", 0.9),
            _rec("n2", "negative", 0.3), _rec("f3", "flagged", None)]
    rows = order_rows(row_from_record(r, tmp_path) for r in recs)
    assert [r["key"] for r in rows] == ["f2", "f1", "f3", "i1", "x1", "n2", "n1"]
    assert [r["rank"] for r in rows] == list(range(1, 8))
    assert rows[0]["largest_finding"]["volume_ml"] == 3.0
    assert rows[4]["decision"] == "failed" and "boom" in rows[4]["reasons"][0]
    csv_path, json_path = write_worklist(rows, tmp_path)
    with open(csv_path, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [t["key"] for t in table] == [r["key"] for r in rows]
    assert table[0]["largest_finding"].startswith("3.00 ml, 20.0 mm")
    assert table[0]["accession_number"] == "acc-f2" and table[0]["report_path"] == "f2/report.json"
    data = json.loads(json_path.read_text())
    assert [s["key"] for s in data["studies"]] == [r["key"] for r in rows]
    assert not list(tmp_path.glob("*.tmp-*"))
