#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Two worker processes (pytest-xdist): most tests run on one core (a CLI subprocess, a screen, a
# service), so two at a time use this 2-core machine's second core; 10.6 min serial, 6.8 min with
# two workers (2026-12-03, same tree). SCREENER_TEST_WORKERS=0 runs them serially in one process.
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "${SCREENER_TEST_WORKERS:-2}" "$@"
