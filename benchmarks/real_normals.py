"""Findings on two real normal T1 heads: total volume, and volume near the brain stem.

Rule (a) of configs/train-brainstem.yaml. `screener screen` runs on (1) the bundled example's
anatomy without a lesion (Colin27 from mricron-data, axial 1 mm, written by
screener.examples.write_example_study) and (2) realdata-dev's chris_t1 (a healthy volunteer's 3D
T1; skipped when ../shared is absent), with the shipped weights or `--weights DIR`, and prints each
head's decision, score, number and total volume of findings, and the findings whose centroid lies
within 15 mm of the head's brain stem point (Colin27 RAS (0, -25, -30), MNI space; chris_t1 RAS
(6, -23, -19), read off its pons). Nothing is fitted; about a minute.

    .venv/bin/python benchmarks/real_normals.py [--weights DIR] [--config FILE] [--grid-shifts] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHRIS = ROOT.parent / "shared" / "realdata-dev" / "niivue-demo-images" / "chris_t1.nii.gz"
BRAIN_STEM_RAS = {"colin27": (0.0, -25.0, -30.0), "chris_t1": (6.0, -23.0, -19.0)}
RADIUS_MM = 15.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="weights bundle (default: the shipped one)")
    ap.add_argument("--config", default=None,
                    help="screen config for both heads (e.g. model settings); --weights overrides "
                         "its model.weights")
    ap.add_argument("--grid-shifts", action="store_true",
                    help="also screen each head with the working grid moved by 1 mm along each "
                         "axis in turn (6 more screens a head) and print the totals: the band "
                         "a figure here moves in from sampling alone")
    ap.add_argument("--work", default=None, help="folder for the studies and outputs (default: temporary)")
    args = ap.parse_args()
    from screener.examples import write_example_study

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="real-normals-"))
    work.mkdir(parents=True, exist_ok=True)
    study = work / "colin27_normal"
    if not study.exists():
        write_example_study(study, lesion=False, plane="axial", inplane_mm=1.0, slice_thickness_mm=1.0)
    import yaml

    settings = (yaml.safe_load(Path(args.config).read_text()) or {}) if args.config else {}
    if args.weights:
        settings.setdefault("model", {})["weights"] = args.weights
    cfg = work / "config.yaml"
    cfg.write_text(yaml.safe_dump(settings))
    heads = {"colin27": study}
    if CHRIS.exists():
        heads["chris_t1"] = CHRIS
    else:
        print("chris_t1 skipped: ../shared/realdata-dev not found")
    for name, inp in heads.items():
        rep = _screen(inp, work / f"out_{name}", cfg)
        if rep is None:
            return 1
        found = rep["findings"]
        near = _near_stem(found, name)
        print(f"{name}: {rep['decision']}, score {rep['abnormality_score']:.4f}; {len(found)} findings, "
              f"{sum(f['volume_ml'] for f in found):.2f} ml in all; within {RADIUS_MM:g} mm of the brain "
              f"stem: {len(near)}, {sum(f['volume_ml'] for f in near):.2f} ml "
              f"(weights {rep['model']['name']} {rep['model']['version']})")
        if args.grid_shifts:
            totals, stems = [], []
            for shift in SHIFTS:
                shifted = dict(settings, model=dict(settings.get("model") or {},
                                                    grid_offsets_mm=[list(shift)]))
                scfg = work / "config-shifted.yaml"
                scfg.write_text(yaml.safe_dump(shifted))
                got = _screen(inp, work / f"out_{name}_shifted", scfg)
                if got is None:
                    return 1
                totals.append(sum(f["volume_ml"] for f in got["findings"]))
                stems.append(sum(f["volume_ml"] for f in _near_stem(got["findings"], name)))
            print(f"  {name}, working grid moved by 1 mm along -x, +x, -y, +y, -z, +z: "
                  + ", ".join(f"{t:.2f}" for t in totals) + f" ml (range {min(totals):.2f}-"
                  f"{max(totals):.2f}, mean with the unmoved grid "
                  f"{np.mean(totals + [sum(f['volume_ml'] for f in found)]):.2f}); within "
                  f"{RADIUS_MM:g} mm of the brain stem: " + ", ".join(f"{t:.2f}" for t in stems)
                  + " ml")
    return 0


# the sampling band: the 2 mm working grid moved by half a voxel along each axis in turn
SHIFTS = [(-1.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 1.0, 0.0),
          (0.0, 0.0, -1.0), (0.0, 0.0, 1.0)]


def _near_stem(findings: list[dict], head: str) -> list[dict]:
    """The findings whose centroid lies within RADIUS_MM of the head's brain stem point."""
    stem = np.array(BRAIN_STEM_RAS[head])
    return [f for f in findings if np.linalg.norm(np.array(f["centroid_ras_mm"]) - stem) <= RADIUS_MM]


def _screen(inp: Path, out: Path, cfg: Path) -> dict | None:
    shutil.rmtree(out, ignore_errors=True)
    run = subprocess.run([sys.executable, "-m", "screener", "screen", str(inp), "-o", str(out),
                          "--device", "cpu", "--config", str(cfg)], capture_output=True, text=True)
    if run.returncode != 0:
        print(f"{inp.name}: screen failed\n{run.stderr[-2000:]}")
        return None
    return json.loads(next(out.glob("*/report.json")).read_text())


if __name__ == "__main__":
    raise SystemExit(main())
