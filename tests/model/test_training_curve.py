"""The training curve draws from a resumed log, before and after batches."""

from __future__ import annotations

import json

from screener.plots import training_curve


def test_training_curve_from_a_resumed_log(tmp_path):
    recs = [{"it": 50, "loss": 2.0, "minutes": 1.0},
            {"it": 100, "loss": 1.9, "minutes": 2.0, "brain_dice": 0.5, "lesion_dice": 0.0,
             "lesion_detected": 0.0},
            {"it": 100, "loss": 1.8, "minutes": 2.1, "brain_dice": 0.6, "lesion_dice": 0.1,
             "lesion_detected": 0.2},  # repeated by a resume: the later record counts
            {"it": 150, "samples": 200, "loss": 1.7, "minutes": 3.0}]
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    out = training_curve(log, tmp_path / "curve.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
