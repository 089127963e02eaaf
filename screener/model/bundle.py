"""Weights bundles (MONAI bundle layout): weights/<name>/configs/metadata.json + models/model.pt.

The sha256 of model.pt is recorded in metadata.json at export and verified at every load, so
a truncated or swapped weights file is refused rather than silently used.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from screener import __version__
from screener.atomic import atomic_write, write_json_atomic
from screener.config import REPO_ROOT, repo_path

INTENDED_USE = "research and worklist triage, not a diagnostic device"


class WeightsError(RuntimeError):
    """The weights bundle is missing, incomplete or does not match its recorded checksum."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_checkpoint(spec: str | Path) -> dict[str, Any]:
    """A training checkpoint from a file, or from the repository's history as COMMIT:PATH
    (`git show`), so that weights averaged from earlier checkpoints can be rebuilt from a clone.
    A relative file path is taken from the working directory when it names a file there (a
    path typed on the command line, `train --average`), else from the repository, as every path
    a config names (config.repo_path, `init_average`)."""
    import io
    import subprocess

    import torch

    path = Path(spec)
    if not path.exists():
        path = repo_path(spec)
    if not path.exists() and ":" in str(spec):
        blob = subprocess.run(["git", "-C", str(REPO_ROOT), "show", str(spec)], capture_output=True,
                              check=True).stdout
        return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=False)
    return torch.load(path, map_location="cpu", weights_only=False)


def average_checkpoints(specs: list[str]) -> dict[str, Any]:
    """The uniform average of the checkpoints' model weights (a "model soup", Wortsman et al.
    2022), as a checkpoint dict. All must be the same network (same tensor names and shapes);
    integer tensors must agree and are kept. `iteration` is the largest of them, `config` the
    last one's (the network they share)."""
    import torch

    if not specs:
        raise ValueError("no checkpoints to average")
    states = [read_checkpoint(s) for s in specs]
    first = states[0]["model"]
    for spec, st in zip(specs[1:], states[1:]):
        other = st["model"]
        if sorted(other) != sorted(first) or any(other[k].shape != first[k].shape for k in first):
            raise ValueError(f"{spec} is not the same network as {specs[0]}")
    avg = {}
    for k, v in first.items():
        if v.is_floating_point():
            avg[k] = torch.stack([st["model"][k].float() for st in states]).mean(0).to(v.dtype)
        else:
            if any(not torch.equal(st["model"][k], v) for st in states):
                raise ValueError(f"integer tensor {k} differs between the checkpoints")
            avg[k] = v.clone()
    return {"model": avg, "iteration": max(int(st["iteration"]) for st in states),
            "averaged_from": [str(s) for s in specs], "config": states[-1].get("config")}


UNRELEASED = "unreleased"


def export_bundle(checkpoint: Path, out_dir: Path, cfg: Any,
                  average_of: list[str] | None = None,
                  config_path: str = "configs/train.yaml") -> Path:
    """Write the checkpoint's model weights (float32 state dict) and metadata as a bundle; with
    `average_of`, the uniform average of those checkpoints instead (`checkpoint` is not read).
    `config_path` is the training config named in the metadata's command."""
    import torch

    from screener.model.train import _plain

    state = (average_checkpoints(average_of) if average_of
             else torch.load(checkpoint, map_location="cpu", weights_only=False))
    models = out_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    model_path = models / "model.pt"
    atomic_write(model_path, lambda tmp: torch.save(state["model"], tmp))
    meta_path = out_dir / "configs" / "metadata.json"
    old = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    train_cfg = _plain(cfg)
    # The label-map folder as the repository sees it (../shared/...), not this machine's path.
    maps_dir = Path(train_cfg["synth"]["label_maps_dir"])
    if maps_dir.is_absolute():
        train_cfg["synth"]["label_maps_dir"] = os.path.relpath(maps_dir, REPO_ROOT)
    meta = {
        "name": cfg.name,
        # A fresh export is a candidate, not a release: it has no version until
        # `python -m screener.model.release version` (scripts/release.sh) names one.
        "version": old.get("version", UNRELEASED),
        "changelog": old.get("changelog", {}),
        "screener_version": __version__,
        "intended_use": INTENDED_USE,
        "task": "brain mask, tissue classes and abnormal-signal probability in brain MR of any contrast",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "magnitude",
                                  "num_channels": cfg.network.in_channels,
                                  "channel_def": {"0": "image", "1": "image reflected about the "
                                                  "head's midsagittal plane (screener/model/symmetry.py)"}
                                  if cfg.network.in_channels == 2 else {"0": "image"},
                                  "spacing_mm": cfg.synth.voxel_mm, "orientation": "RAS",
                                  "intensity": "percentile 0.5-99.5 scaled to [0,1], clipped"}},
            "outputs": {"pred": {"type": "probabilities", "num_channels": cfg.network.out_channels,
                                  "channel_def": {"0": "non-brain", "1": "white matter",
                                                  "2": "grey matter", "3": "ventricles",
                                                  "4": "extra-cerebral CSF", "5": "abnormal signal"}}},
        },
        "network": train_cfg["network"],
        "training": {"config": train_cfg, "iterations": int(state["iteration"]),
                     **({"averaged_from": state["averaged_from"]}
                        if "averaged_from" in state else {}),
                     "data": "synthetic heads from the 20 SynthSeg training label maps "
                             f"(first {cfg.train_maps} for training, the rest held out), "
                             "generated by screener/model/synth.py; no real images",
                     "command": f"screener train --config {config_path}"
                     + (" --export WEIGHTS_DIR --average " + " ".join(state["averaged_from"])
                        if "averaged_from" in state else "")},
        "provenance": {"exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                       "label_maps": "SynthSeg training label maps (Apache-2.0), Billot et al. 2023"},
        "evaluation": old.get("evaluation", {}),
        "sha256": {"models/model.pt": sha256_file(model_path)},
    }
    write_json_atomic(meta_path, meta)
    return out_dir


def verified_metadata(weights_dir: Path) -> dict[str, Any]:
    """The bundle's metadata, with `weights_sha256`, after checking that both files exist and
    models/model.pt matches its recorded sha256 (WeightsError otherwise)."""
    meta_path = weights_dir / "configs" / "metadata.json"
    model_path = weights_dir / "models" / "model.pt"
    if not meta_path.exists() or not model_path.exists():
        raise WeightsError(f"weights bundle incomplete: {weights_dir}")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    want = meta.get("sha256", {}).get("models/model.pt")
    got = sha256_file(model_path)
    if want != got:
        raise WeightsError(f"weights checksum mismatch for {model_path}: recorded {want}, file {got}")
    meta["weights_sha256"] = got
    # The finding verifier (optional) is part of the weights: a verifier.json that is there
    # without its recorded checksum, or one that does not match it, is refused too.
    from screener.model.verifier import VERIFIER_FILE

    verifier_path = weights_dir / VERIFIER_FILE
    want_v = meta.get("sha256", {}).get(VERIFIER_FILE)
    if verifier_path.exists() or want_v is not None:
        got_v = sha256_file(verifier_path) if verifier_path.exists() else None
        if want_v != got_v:
            raise WeightsError(f"verifier checksum mismatch for {verifier_path}: recorded "
                               f"{want_v}, file {got_v}")
    return meta


def load_bundle(weights_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (metadata, state_dict) after verifying the recorded sha256."""
    import torch

    meta = verified_metadata(weights_dir)
    state = torch.load(weights_dir / "models" / "model.pt", map_location="cpu", weights_only=True)
    return meta, state
