#!/usr/bin/env bash
# Sets up a fresh machine for the screener: system tools (when root), a virtual environment at
# .venv in the repo root, the package with all extras. Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=()
  command -v dcm2niix >/dev/null || need+=(dcm2niix)
  command -v storescu >/dev/null || need+=(dcmtk)
  command -v Orthanc >/dev/null || need+=(orthanc)
  [ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
  [ -e /usr/share/mricron/templates/ch2.nii.gz ] || need+=(mricron-data)
  if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if ! .venv/bin/python -c "import screener, torch, monai, pynetdicom, dask.distributed, xdist" 2>/dev/null; then
  echo "setup: installing Python packages into .venv" >&2
  .venv/bin/pip install -q --upgrade pip
  # torch first and pinned: 2.13.0 is a CPU wheel; an unpinned torch pulls a CUDA build.
  .venv/bin/pip install -q torch==2.13.0
  .venv/bin/pip install -q -e '.[all]'
fi
