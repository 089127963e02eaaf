"""Must-show of issue 6: kill a batch part-way (SIGKILL to the whole process group) and rerun.

Variants: `toy` (real discovery/io, stand-in screen slowed down; always runs) and `real` (the
real pipeline; skipped with the reason when the pipeline or its weights are unavailable).
Also holds the helpers the dask test shares: realistic synthetic heads and the real config.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

import pytest
import yaml
from test_batch_fakes import SECRET_ACCESSION, make_dicom_study

from screener.batching.worker import read_complete_report

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def _test_config() -> dict:
    """Default config, merged with $SCREENER_TEST_CONFIG when set (e.g. to try weights that
    are not yet exported into weights/); only these real-pipeline tests read it."""
    from screener.config import load_config

    return load_config(os.environ.get("SCREENER_TEST_CONFIG") or None)


@lru_cache(maxsize=1)
def _real_status() -> str:
    """'' when the real pipeline and its weights load, else why not."""
    try:
        from screener.pipeline import load_model, screen_study  # noqa: F401

        load_model(_test_config(), "cpu")
    except Exception as exc:  # noqa: BLE001 - any reason makes the real variant skip
        return f"real pipeline unavailable: {type(exc).__name__}: {exc}"[:300]
    return ""


def real_config_or_skip() -> dict:
    """The config of the real pipeline, or skip the calling test with the reason."""
    why = _real_status()
    if why:
        pytest.skip(why)
    cfg = _test_config()
    cfg["batch"] = dict(cfg["batch"], progress=False)
    return cfg


@lru_cache(maxsize=1)
def _generator():
    from screener.model.synth import SynthConfig, SynthGenerator

    maps = REPO.parent / "shared" / "synth-label-maps"
    if not maps.exists():
        pytest.skip(f"{maps} not available")
    return SynthGenerator(SynthConfig(label_maps_dir=str(maps), max_label_maps=2))


HEADS = 4  # distinct heads the real-pipeline batch tests draw (2 with a lesion); ~1 s each


@lru_cache(maxsize=None)
def realistic_head(i: int, lesion: bool):
    """A synthetic FLAIR head (2 mm grid) from the lead's generator, scaled to scanner-like
    values; a 20 mm oedema-like lesion when `lesion`. Cached (read-only arrays): the batch
    tests reuse a few heads across many studies, since the batch's mechanics are under test."""
    import numpy as np

    from screener.model.synth import SampleSpec

    spec = SampleSpec(lesion=lesion, kind="oedema" if lesion else None,
                      diameter_mm=20.0 if lesion else None, slice_thickness_mm=2.0,
                      contrast="FLAIR", n_lesions=1 if lesion else None)
    s = _generator().sample(9_000_000 + i, spec)
    data = s.image.numpy()[0]
    data = (data - data.min()) * 1000.0
    affine = np.array(s.affine, dtype=np.float64)
    data.setflags(write=False)
    affine.setflags(write=False)
    return data, affine


def _write_config(path: Path, toy: bool) -> Path:
    """The whole config the CLI runs with (progress bar on)."""
    cfg = _test_config()
    cfg["batch"] = dict(cfg["batch"], progress=True)
    if toy:
        cfg["batch"].update(screen_function="test_batch_fakes:toy_screen",
                            model_loader="test_batch_fakes:load_model")
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run(args: list[str], env: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "screener", "batch", *args], env=env,
                            start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _kill_and_rerun(tmp_path: Path, n: int, toy: bool, kill_after: int, delay: str,
                    timeout: float) -> None:
    root = tmp_path / "dicom"
    for i in range(n):
        head = None if toy else realistic_head(i % HEADS, lesion=i % 2 == 1)
        make_dicom_study(root, f"s{i:02d}", bright=i % 2 == 1, seed=i, head=head)
    out = tmp_path / "out"
    cfg = _write_config(tmp_path / "cfg.yaml", toy)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
               FAKE_SCREEN_DELAY=delay, OMP_NUM_THREADS="1")
    args = [str(root), "-o", str(out), "--workers", "1", "--config", str(cfg), "-v"]
    proc = _run(args, env)
    deadline = time.time() + timeout
    while time.time() < deadline and len(list(out.glob("*/report.json"))) < kill_after:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its worker processes, mid-study
    proc.communicate()
    done_before = {p.parent.name: (p.stat().st_ino, p.stat().st_mtime_ns)
                   for p in out.glob("*/report.json")}
    assert kill_after <= len(done_before) < n, "kill came too late to test anything"
    # No partial results under final names: every study folder is complete.
    for d in out.iterdir():
        if d.is_dir() and not d.name.startswith(".") and d.name != "errors":
            assert read_complete_report(d) is not None, f"partial study folder {d.name}"
    assert not list(out.glob("*.tmp-*")) and not (out / "worklist.csv").exists()

    env["FAKE_SCREEN_DELAY"] = "0"
    rerun = _run(args, env)
    stdout, stderr = rerun.communicate(timeout=timeout)
    assert rerun.returncode == 0, stderr[-2000:]
    summary = json.loads((out / "batch_summary.json").read_text())
    assert summary["studies"] == n and summary["counts"]["failed"] == 0
    assert summary["skipped_complete"] == len(done_before)
    assert summary["screened_this_run"] == n - len(done_before)
    after = {p.parent.name: (p.stat().st_ino, p.stat().st_mtime_ns)
             for p in out.glob("*/report.json")}
    assert len(after) == n
    assert all(after[k] == v for k, v in done_before.items()), "a complete study was redone"
    assert not (out / ".staging").exists() or not any((out / ".staging").iterdir())
    assert not list(out.rglob("*.tmp-*"))
    assert SECRET_ACCESSION not in stderr and "Secret^Patient" not in stderr
    # tqdm progress on stderr with a rate (study/s or s/study) and ETA, no identifiers.
    assert re.search(r"screening: .*\d+/\d+ \[.*<.*(study/s|s/study)", stderr), stderr[-500:]


@pytest.mark.slow
def test_kill_and_rerun_toy(tmp_path):
    _kill_and_rerun(tmp_path, n=10, toy=True, kill_after=3, delay="0.6", timeout=120)


@pytest.mark.slow
def test_kill_and_rerun_real_pipeline(tmp_path):
    real_config_or_skip()
    _kill_and_rerun(tmp_path, n=4, toy=False, kill_after=1, delay="0", timeout=600)
