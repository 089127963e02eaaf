"""What produced the results in an OUTDIR: model bundle, calibration and result-relevant config.

A rerun resumes only when this identity is unchanged; otherwise finished reports came from
another model, calibration or setting and mixing them into one worklist would be wrong, so the
batch refuses to resume (use --force to redo everything, or a new OUTDIR).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from screener.config import repo_path

# Sections that only change how the work is run, not the results.
NOT_RESULT_SECTIONS = ("batch", "evaluate", "serve", "watch")


def _file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def run_identity(config: dict[str, Any]) -> dict[str, Any]:
    """Digests of the weights bundle's metadata (which records model.pt's sha256), of its
    calibration.json, and of the config without run-only sections."""
    from screener.config import section
    from screener.infer import ModelConfig

    weights = repo_path(section(config, "model", ModelConfig).weights)
    relevant = {k: v for k, v in config.items() if k not in NOT_RESULT_SECTIONS}
    return {
        "weights": str(weights.name),
        "metadata_sha256": _file_digest(weights / "configs" / "metadata.json"),
        "calibration_sha256": _file_digest(weights / "calibration.json"),
        "config_sha256": hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str)
                                        .encode()).hexdigest(),
    }
