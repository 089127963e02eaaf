"""`screener train --smoke` runs, resumes, exports a bundle whose checksum is verified at load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from screener.config import REPO_ROOT
from screener.model.bundle import WeightsError, load_bundle


def test_smoke_train_resume_export_and_tamper(tmp_path, shared):
    shared("synth-label-maps")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "screener", "train", "--smoke", "--run-dir", str(run)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=REPO_ROOT)
    assert first.returncode == 0, first.stderr[-2000:]
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["it"] == 6 and "brain_dice" in log[-1]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=REPO_ROOT)
    assert again.returncode == 0 and "resuming" in again.stderr
    from screener.model.bundle import export_bundle
    from screener.model.train import load_train_config

    out = tmp_path / "bundle"
    export_bundle(run / "checkpoint.pt", out, load_train_config(REPO_ROOT / "configs/train.yaml", smoke=True))
    meta, state = load_bundle(out)
    assert meta["intended_use"].startswith("research and worklist triage")
    assert meta["training"]["iterations"] == 6 and state
    # The label maps are named as the repository sees them, so the bundle works on any machine.
    maps_dir = meta["training"]["config"]["synth"]["label_maps_dir"]
    assert not Path(maps_dir).is_absolute()
    assert (REPO_ROOT / maps_dir).resolve() == (REPO_ROOT / "../shared/synth-label-maps").resolve()
    model = out / "models" / "model.pt"
    model.write_bytes(model.read_bytes()[:-10])
    with pytest.raises(WeightsError):
        load_bundle(out)


def test_shipped_weights_are_verified_and_small():
    wdir = REPO_ROOT / "weights" / "screener-synth-v1"
    meta, state = load_bundle(wdir)
    assert (wdir / "models" / "model.pt").stat().st_size < 50 * 2**20
    for key in ("version", "changelog", "intended_use", "network_data_format", "training",
                "provenance", "evaluation"):
        assert key in meta, key
    assert "not a diagnostic device" in meta["intended_use"]
