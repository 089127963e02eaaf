"""Per-study time limits: the batch (inline and in worker processes) and the limit itself.
(The service's limit is tested in tests/pacs/test_limits.py.)"""

from __future__ import annotations

import threading
import time

import pytest

import slow_fakes
from screener.config import load_config
from screener.hardening.timelimit import StudyTimeLimitError, time_limit


def _python_work(seconds: float) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        try:
            time.sleep(0.01)
        except Exception:  # noqa: BLE001 - the pipeline's handlers must not swallow the limit
            pass


def test_limit_interrupts_python_code_even_under_except_exception():
    t0 = time.monotonic()
    with pytest.raises(StudyTimeLimitError, match="time limit of 0.5 s"):
        with time_limit(0.5, "test"):
            _python_work(30)
    assert time.monotonic() - t0 < 3


def test_no_late_interrupt_after_the_block_and_no_limit_when_zero():
    with time_limit(0.3, "test"):
        _python_work(0.05)
    _python_work(0.6)  # nothing fires after the block ended
    with time_limit(0, "test"):
        _python_work(0.05)
    with pytest.raises(ValueError):  # other errors pass through unchanged
        with time_limit(5, "test"):
            raise ValueError("x")


def test_limit_works_in_a_worker_thread():
    result = {}

    def run() -> None:
        try:
            with time_limit(0.3, "thread"):
                _python_work(30)
        except StudyTimeLimitError as exc:
            result["err"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    assert not t.is_alive() and isinstance(result.get("err"), StudyTimeLimitError)


def _config(limit: float) -> dict:
    cfg = load_config()
    cfg["batch"].update({"screen_function": "slow_fakes:screen_study",
                         "model_loader": "slow_fakes:load_model",
                         "study_dir_name": "slow_fakes:study_dir_name",
                         "discover_function": "slow_fakes:find_studies",
                         "progress": False, "study_time_limit_s": limit})
    return cfg


@pytest.mark.parametrize("workers", [0, 1])
def test_batch_study_over_the_limit_fails_and_the_batch_goes_on(tmp_path, workers):
    from screener.batch import run_batch

    slow_fakes.make(tmp_path / "in", "a-normal", "normal")
    slow_fakes.make(tmp_path / "in", "b-slow", "python_loop")
    slow_fakes.make(tmp_path / "in", "c-normal", "normal")
    kinds = ["python_loop"] if workers == 0 else ["python_loop", "c_call"]
    if workers:
        slow_fakes.make(tmp_path / "in", "d-stuck", "c_call")
    out = tmp_path / "out"
    t0 = time.monotonic()
    res = run_batch([tmp_path / "in"], out, _config(1.0), workers=workers)
    assert time.monotonic() - t0 < 45
    failed = [r for r in res.records if r["status"] == "failed"]
    assert len(failed) == len(kinds)
    assert res.summary["counts"]["negative"] == 2
    slow = next(r for r in failed if r["error"]["error"] == "StudyTimeLimitError")
    assert "time limit of 1 s" in slow["error"]["message"]
    assert not (out / slow["key"]).exists()  # nothing half-written published
    assert (out / "errors" / f"{slow['key']}.json").is_file()
    # Every published study folder is complete (a killed worker's staging folder stays under
    # .staging, which the next run clears).
    published = [d for d in out.iterdir() if d.is_dir() and not d.name.startswith((".", "errors"))]
    assert len(published) == 2 and all((d / "report.json").is_file() for d in published)
    if workers:  # stuck in C: the worker process is ended, the study recorded as failed
        stuck = next(r for r in failed if r is not slow)
        assert stuck["error"]["stage"] == "worker_died"


def test_default_config_has_a_batch_time_limit():
    from screener.batch import BatchConfig
    from screener.config import section

    assert section(load_config(), "batch", BatchConfig).study_time_limit_s == 900.0
