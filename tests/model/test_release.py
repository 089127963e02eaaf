"""Release helper: version and evaluation figures copied from the files the commands wrote."""

from __future__ import annotations

import json
import shutil

import pytest

from screener.config import REPO_ROOT
from screener.model.release import main, set_evaluation

SHIPPED = REPO_ROOT / "weights" / "screener-synth-v1"


@pytest.fixture
def bundle(tmp_path):
    w = tmp_path / "w"
    (w / "configs").mkdir(parents=True)
    for name in ("configs/metadata.json", "calibration.json", "benchmark.json"):
        shutil.copy(SHIPPED / name, w / name)
    return w


def test_version_and_evaluation(bundle, tmp_path):
    assert main(["version", str(bundle), "9.9.9", "test release"]) == 0
    bench = json.loads((bundle / "benchmark.json").read_text())
    dev = tmp_path / "metrics.json"
    dev.write_text(json.dumps({
        "n_cases": 3,
        "model": {"study": {"decisions": {"flagged": 2, "negative": 1},
                            "operating_point": {"confusion": {"tp": 2, "fp": 0, "tn": 1, "fn": 0}}},
                  "voxel": {"dice": {"mean": 0.5}}},
        "baseline": {"voxel": {"dice": {"mean": 0.25}}}}))
    assert main(["evaluation", str(bundle), "--dev", str(dev)]) == 0
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["version"] == "9.9.9" and meta["changelog"]["9.9.9"] == "test release"
    ev = meta["evaluation"]
    # Per-diameter totals are the benchmark's cells summed, not typed in.
    for d, row in ev["synthetic_benchmark"]["detected_by_diameter_mm"].items():
        cells = [c for c in bench["cells"] if str(c["diameter_mm"]) == d]
        assert row["n"] == sum(c["n"] for c in cells)
        assert row["detected"] == sum(c["detected"] for c in cells)
    assert ev["synthetic_benchmark"]["specificity"] == bench["specificity"]
    assert ev["realdata_dev"]["voxel_dice_mean"] == 0.5
    assert ev["realdata_dev"]["baseline_voxel_dice_mean"] == 0.25
    cal = json.loads((bundle / "calibration.json").read_text())
    assert ev["calibration"]["threshold"] == cal["threshold"]
    assert ("note" in ev) == (cal["threshold"] <= 0.0)


def test_benchmark_of_other_weights_is_refused(bundle):
    bench = json.loads((bundle / "benchmark.json").read_text())
    bench["model"]["weights_sha256"] = "0" * 64
    (bundle / "benchmark.json").write_text(json.dumps(bench))
    with pytest.raises(ValueError, match="other weights"):
        set_evaluation(bundle)


def test_adopt_takes_the_candidate_and_keeps_the_history(bundle, tmp_path):
    from screener.model.bundle import sha256_file

    shutil.copytree(SHIPPED / "models", bundle / "models")
    old = json.loads((bundle / "configs" / "metadata.json").read_text())
    cand = tmp_path / "cand"
    (cand / "models").mkdir(parents=True)
    (cand / "configs").mkdir()
    (cand / "models" / "model.pt").write_bytes(b"candidate weights")
    cmeta = {**old, "version": "0.1.0", "changelog": {"0.1.0": "first"}, "evaluation": {},
             "training": {**old["training"], "iterations": 123},
             "sha256": {"models/model.pt": sha256_file(cand / "models" / "model.pt")}}
    (cand / "configs" / "metadata.json").write_text(json.dumps(cmeta))
    assert main(["adopt", str(cand), str(bundle)]) == 0
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert (bundle / "models" / "model.pt").read_bytes() == b"candidate weights"
    assert meta["training"]["iterations"] == 123 and meta["sha256"] == cmeta["sha256"]
    assert meta["version"] == old["version"] and meta["changelog"] == old["changelog"]
    assert meta["evaluation"] == old["evaluation"]
    # A verifier comes with its candidate; a candidate without one leaves the bundle none.
    (cand / "verifier.json").write_text('{"fitted": "on the candidate"}')
    cmeta["sha256"]["verifier.json"] = sha256_file(cand / "verifier.json")
    (cand / "configs" / "metadata.json").write_text(json.dumps(cmeta))
    assert main(["adopt", str(cand), str(bundle)]) == 0
    assert (bundle / "verifier.json").read_text() == '{"fitted": "on the candidate"}'
    (cand / "verifier.json").unlink()
    cmeta["sha256"].pop("verifier.json")
    (cand / "configs" / "metadata.json").write_text(json.dumps(cmeta))
    assert main(["adopt", str(cand), str(bundle)]) == 0
    assert not (bundle / "verifier.json").exists()


def test_adopt_refuses_a_candidate_whose_model_fails_its_checksum(bundle, tmp_path):
    from screener.model.bundle import WeightsError

    cand = tmp_path / "cand"
    shutil.copytree(SHIPPED / "configs", cand / "configs")
    (cand / "models").mkdir()
    (cand / "models" / "model.pt").write_bytes(b"not the recorded weights")
    with pytest.raises(WeightsError):
        main(["adopt", str(cand), str(bundle)])
    assert not (bundle / "models").exists()


def test_release_script_runs_the_commands_metadata_names():
    """metadata.json states how calibration, benchmark and dev figures were made; scripts/release.sh
    must run exactly those commands, or the bundle would describe a command that did not run."""
    from screener.model.release import BENCHMARK_COMMAND, CALIBRATE_COMMAND, DEV_COMMAND

    script = (REPO_ROOT / "scripts" / "release.sh").read_text()
    run = [line.strip().replace("$PY ", "python ").replace(".venv/bin/screener ", "screener ")
           for line in script.splitlines()]
    for command in (CALIBRATE_COMMAND, BENCHMARK_COMMAND, DEV_COMMAND):
        assert command in run, f"scripts/release.sh does not run {command!r}"
