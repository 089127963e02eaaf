"""Deliberately bad fuzz targets: the sandbox must classify each one, and recover."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def behave(case_dir: str, config: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Do what the case folder's name says."""
    what = Path(case_dir).name
    if what == "crash":
        raise KeyError("escaped")
    if what == "hang":
        time.sleep(60)
    if what == "hog":  # beyond the address-space limit: MemoryError
        bytearray(64 * 1024 ** 3)
    if what == "touch":  # within the address space, but resident memory over the RSS limit
        block = bytearray(400 * 1024 ** 2)
        block[::4096] = b"\x01" * len(block[::4096])
    if what == "die":
        os.abort()
    return {"outcome": "parsed", "detail": what}
