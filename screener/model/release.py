"""Version and evaluation block of a weights bundle's metadata.json (used by scripts/release.sh).

`adopt` takes a candidate exported earlier (`screener train --export DIR`) as the bundle's model,
so the weights released are exactly the ones that were judged, even if training went on since;
the bundle keeps its version history. `version` sets the version and its changelog line, right
after export and before calibration and the benchmark, so the files they write name the version
they measured. `evaluation` copies what was measured into metadata.json afterwards: the
calibration (weights/<name>/calibration.json), the held-out synthetic benchmark
(weights/<name>/benchmark.json) and, when given, the realdata-dev metrics (metrics.json of
`screener evaluate`). Nothing is typed in by hand: every figure comes from a file a command wrote.

    python -m screener.model.release adopt /tmp/cand weights/screener-synth-v1
    python -m screener.model.release version weights/screener-synth-v1 0.3.0 "what changed"
    python -m screener.model.release evaluation weights/screener-synth-v1 --dev eval/dev/metrics.json
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from screener.atomic import atomic_write, write_json_atomic

CALIBRATE_COMMAND = "python -m screener.model.synth_eval calibrate --n 160 --seed 1"
BENCHMARK_COMMAND = "screener evaluate --synthetic 1000 --seed 2 -o eval/synthetic"
DEV_COMMAND = "screener evaluate ../shared/realdata-dev/cases.csv -o eval/dev"


def _meta_path(weights: Path) -> Path:
    return weights / "configs" / "metadata.json"


def adopt(candidate: Path, weights: Path) -> dict[str, Any]:
    """Make `candidate`'s model and training metadata the bundle's; version, changelog and the
    last evaluation stay the bundle's until `version` and `evaluation` replace them."""
    from screener.model.bundle import verified_metadata

    cand_meta = verified_metadata(candidate)
    cand_meta.pop("weights_sha256")  # load-time field, not part of the stored metadata
    old = json.loads(_meta_path(weights).read_text()) if _meta_path(weights).exists() else {}
    meta = {**cand_meta, **{k: old[k] for k in ("version", "changelog", "evaluation") if k in old}}
    (weights / "models").mkdir(parents=True, exist_ok=True)
    atomic_write(weights / "models" / "model.pt",
                 lambda tmp: shutil.copyfile(candidate / "models" / "model.pt", tmp))
    # The finding verifier belongs to the network it was fitted on: it comes with the
    # candidate, or the bundle has none.
    from screener.model.verifier import VERIFIER_FILE

    if (candidate / VERIFIER_FILE).exists():
        atomic_write(weights / VERIFIER_FILE,
                     lambda tmp: shutil.copyfile(candidate / VERIFIER_FILE, tmp))
    else:
        (weights / VERIFIER_FILE).unlink(missing_ok=True)
    write_json_atomic(_meta_path(weights), meta)
    return meta


def set_version(weights: Path, version: str, changelog: str) -> dict[str, Any]:
    meta = json.loads(_meta_path(weights).read_text())
    meta["version"] = version
    meta.setdefault("changelog", {})[version] = changelog
    write_json_atomic(_meta_path(weights), meta)
    return meta


def _wilson(k: int, n: int) -> list[float] | None:
    from screener.metrics import wilson_interval

    ci = wilson_interval(k, n)
    return list(ci) if ci else None


def evaluation_block(weights: Path, meta: dict[str, Any], dev_metrics: Path | None = None
                     ) -> dict[str, Any]:
    """The evaluation figures of the bundle (its metadata `meta`), read from the files the
    measuring commands wrote."""
    cal = json.loads((weights / "calibration.json").read_text())
    bench = json.loads((weights / "benchmark.json").read_text())
    if (bench.get("model") or {}).get("weights_sha256") != meta["sha256"]["models/model.pt"]:
        raise ValueError("benchmark.json was measured on other weights than models/model.pt")
    by_d: dict[str, dict[str, int]] = {}
    for c in bench["cells"]:
        d = by_d.setdefault(str(c["diameter_mm"]), {"detected": 0, "n": 0})
        d["detected"] += int(c["detected"])
        d["n"] += int(c["n"])
    for d in by_d.values():
        d["ci95"] = _wilson(d["detected"], d["n"])  # type: ignore[assignment]
    out: dict[str, Any] = {
        "calibration": {k: cal[k] for k in ("n_abnormal", "n_normal", "threshold",
                                            "target_sensitivity", "specificity",
                                            "fnr_upper_bound")}
        | {"data": "held-out label maps 18-20, seed space calib, lesions >= 10 mm, slices 1-5 mm",
           "command": CALIBRATE_COMMAND},
        "synthetic_benchmark": {"command": BENCHMARK_COMMAND, "detected_by_diameter_mm": by_d,
                                "specificity": bench["specificity"],
                                "score_threshold": bench["score_threshold"]},
    }
    if dev_metrics is not None:
        m = json.loads(dev_metrics.read_text())
        study = m["model"]["study"]
        out["realdata_dev"] = {
            "command": DEV_COMMAND, "n_cases": m["n_cases"], "decisions": study["decisions"],
            "referred": study["operating_point"]["confusion"],
            "voxel_dice_mean": (m["model"].get("voxel") or {}).get("dice", {}).get("mean"),
            "baseline_voxel_dice_mean": (m["baseline"].get("voxel") or {}).get("dice", {}).get("mean"),
            "note": "development cases: settings were chosen while reading them; not a test set",
        }
    if cal["threshold"] <= 0.0:
        out["note"] = ("At the target sensitivity the operating threshold is 0: every assessable "
                       "study is flagged. This version is not fit for triage; see issue 3.")
    return out


def set_evaluation(weights: Path, dev_metrics: Path | None = None) -> dict[str, Any]:
    meta = json.loads(_meta_path(weights).read_text())
    meta["evaluation"] = evaluation_block(weights, meta, dev_metrics)
    write_json_atomic(_meta_path(weights), meta)
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Set a weights bundle's version or evaluation block.")
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("adopt", help="take an exported candidate's model (version history kept)")
    c.add_argument("candidate", type=Path)
    c.add_argument("weights", type=Path)
    v = sub.add_parser("version", help="set version and changelog line")
    v.add_argument("weights", type=Path)
    v.add_argument("version")
    v.add_argument("changelog")
    e = sub.add_parser("evaluation", help="copy measured figures into metadata.json")
    e.add_argument("weights", type=Path)
    e.add_argument("--dev", type=Path, help="metrics.json of screener evaluate on realdata-dev")
    a = ap.parse_args(argv)
    if a.command == "adopt":
        meta = adopt(a.candidate, a.weights)
        print(f"{meta['name']} {meta.get('version')}: "
              f"model of iteration {meta['training']['iterations']}")
    elif a.command == "version":
        meta = set_version(a.weights, a.version, a.changelog)
        print(f"{meta['name']} {meta['version']}")
    else:
        meta = set_evaluation(a.weights, a.dev)
        print(json.dumps(meta["evaluation"], indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
