"""`screener train --smoke` runs, resumes, exports a bundle whose checksum is verified at load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from screener.config import REPO_ROOT
from screener.model.bundle import WeightsError, load_bundle
from screener.model.train import load_train_config


def test_smoke_train_resume_export_and_tamper(tmp_path, shared):
    shared("synth-label-maps")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "screener", "train", "--smoke", "--run-dir", str(run)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=REPO_ROOT)
    assert first.returncode == 0, first.stderr[-2000:]
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["it"] == 6 and "brain_dice" in log[-1]
    batch = load_train_config(REPO_ROOT / "configs/train.yaml", smoke=True).batch_size
    assert log[-1]["samples"] == 6 * batch  # the stream resumes from the samples drawn
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=REPO_ROOT)
    assert again.returncode == 0 and "resuming" in again.stderr
    from dataclasses import replace

    import torch

    from screener.model.bundle import export_bundle
    from screener.model.train import train

    # A resumed run takes the config's learning rate, not the one saved with the optimizer.
    smoke = load_train_config(REPO_ROOT / "configs/train.yaml", smoke=True)
    saved = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert saved["optimizer"]["param_groups"][0]["lr"] == smoke.learning_rate
    annealed = run.parent / "annealed"
    annealed.mkdir()
    (annealed / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes())
    train(replace(smoke, learning_rate=smoke.learning_rate / 10, iterations=7, val_every=10**6),
          run_dir=annealed)
    after = torch.load(annealed / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert after["iteration"] == 7 and after["samples"] == saved["samples"] + batch
    assert after["optimizer"]["param_groups"][0]["lr"] == pytest.approx(smoke.learning_rate / 10)

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
