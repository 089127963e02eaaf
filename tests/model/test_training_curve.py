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


def test_training_curve_of_a_lineage_stops_each_run_where_the_next_began(tmp_path):
    from screener.plots import _read_log, parse_log_spec, training_curve

    first = tmp_path / "main" / "log.jsonl"
    first.parent.mkdir()
    first.write_text("\n".join(json.dumps(r) for r in [
        {"it": 50, "samples": 100, "loss": 2.0},
        {"it": 100, "samples": 200, "loss": 1.5, "brain_dice": 0.8, "lesion_dice": 0.1, "lesion_detected": 0.3},
        {"it": 150, "samples": 300, "loss": 9.9}]) + "\n")  # after the fine-tune's start: not drawn
    second = tmp_path / "finetune" / "log.jsonl"
    second.parent.mkdir()
    second.write_text("\n".join(json.dumps(r) for r in [
        {"it": 50, "samples": 100, "loss": 1.4},
        {"it": 100, "samples": 200, "loss": 1.3, "brain_dice": 0.85, "lesion_dice": 0.2, "lesion_detected": 0.4}]) + "\n")
    assert parse_log_spec(f"{first}@100") == (first, 100)
    assert parse_log_spec(str(second)) == (second, None)
    assert sorted(_read_log(first, 100)) == [50, 100]
    out = training_curve([parse_log_spec(f"{first}@100"), parse_log_spec(str(second))],
                         tmp_path / "curve.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    from screener.plots import main

    assert main(["training-curve", f"{first}@100", str(second), str(tmp_path / "cli.png")]) == 0
    assert (tmp_path / "cli.png").stat().st_size > 5000
