#!/usr/bin/env bash
# Release the weights trained so far: export the checkpoint, name the version, calibrate, run the
# held-out synthetic benchmark and realdata-dev, and copy every figure into metadata.json.
# About 15 minutes on 2 CPU cores on a fast day (0.7.1; the 1000-head benchmark 10 of them), 25-40 on a slow one. Inference settings are chosen before this, by reading
#   .venv/bin/python benchmarks/inference_settings.py --n 60
#
#   bash scripts/release.sh 0.3.0 "what changed in this version" [CANDIDATE_DIR]
#
# With CANDIDATE_DIR (written earlier by `screener train --export DIR`), exactly that candidate is
# released, not the checkpoint as it is now: the weights shipped are the ones inference_settings
# judged, even when training has gone on since.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || [ $# -eq 3 ] || { echo "usage: $0 VERSION CHANGELOG [CANDIDATE_DIR]" >&2; exit 2; }
W=weights/screener-synth-v1
PY=.venv/bin/python
if [ $# -eq 3 ]; then
  $PY -m screener.model.release adopt "$3" "$W"
else
  .venv/bin/screener train --config configs/train.yaml --export "$W"
fi
$PY -m screener.model.release version "$W" "$1" "$2"
$PY -m screener.model.synth_eval calibrate --n 160 --seed 1
.venv/bin/screener evaluate --synthetic 1000 --seed 2 -o eval/synthetic
cp eval/synthetic/benchmark.json "$W/benchmark.json"
DEV=()
if [ -f ../shared/realdata-dev/cases.csv ]; then
  rm -rf eval/dev/studies
  .venv/bin/screener evaluate ../shared/realdata-dev/cases.csv -o eval/dev
  DEV=(--dev eval/dev/metrics.json)
fi
$PY -m screener.model.release evaluation "$W" "${DEV[@]}"
# the runs behind the shipped network, in training order (configs/shipped-lineage.txt)
mapfile -t LINEAGE < <(grep -v '^[[:space:]]*\(#\|$\)' configs/shipped-lineage.txt)
$PY -m screener.plots training-curve "${LINEAGE[@]}" docs/training_curve.png
