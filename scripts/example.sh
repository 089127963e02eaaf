#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and screens the bundled example study on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/screener screen examples/colin27-t1-lesion -o out/example --device cpu
echo "outputs: out/example/*/ (report.json, report.html, overlay.png, anomaly_map.nii.gz, sr.dcm, seg.dcm)"
