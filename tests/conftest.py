"""Shared test fixtures. Tests that need ../shared look for it beside the repo and skip when absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from testpaths import REPO, SHARED, shared_path  # noqa: F401  (re-exported)


@pytest.fixture
def shared():
    return shared_path
