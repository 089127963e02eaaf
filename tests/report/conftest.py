"""Fixtures of the report tests (helpers live in report_cases.py)."""

from __future__ import annotations

import pytest
from report_cases import make_calibration


@pytest.fixture(scope="session")
def calibration():
    return make_calibration()
