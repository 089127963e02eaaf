"""Batch machinery on stand-in studies: counts, failures, resume, force, processes, no PHI."""

from __future__ import annotations

import json
import logging

import pytest
from test_batch_fakes import SECRET_ACCESSION, fake_config, make_fake_study

from screener.batch import run_batch

KINDS = [("a", "normal", 0.1), ("b", "lesion", 0.7), ("c", "lesion", 0.95), ("d", "corrupt", 0.0),
         ("e", "crash", 0.0), ("f", "normal", 0.3)]


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "in"
    for name, kind, score in KINDS:
        make_fake_study(root, name, kind, score)
    return root


def test_inline_counts_failures_worklist(tree, tmp_path, caplog, capsys):
    out = tmp_path / "out"
    with caplog.at_level(logging.DEBUG):
        res = run_batch([tree], out, fake_config(), workers=0)
    s = res.summary
    assert s["counts"] == {"negative": 2, "flagged": 2, "indeterminate": 1, "failed": 1}
    assert len(s["failures"]) == 1 and s["failures"][0]["stage"] == "screen"
    assert s["failures"][0]["error"] == "RuntimeError" and "screen_study" in s["failures"][0]["where"]
    key = s["failures"][0]["key"]
    assert json.loads((out / "errors" / f"{key}.json").read_text())["stage"] == "screen"
    assert not (out / key).exists()
    reports = sorted(out.glob("*/report.json"))
    assert len(reports) == 5
    wl = json.loads((out / "worklist.json").read_text())["studies"]
    assert [w["decision"] for w in wl] == ["flagged", "flagged", "indeterminate", "failed",
                                          "negative", "negative"]
    assert wl[0]["abnormality_score"] == 0.95 and wl[4]["abnormality_score"] == 0.3
    assert s["model_loads_per_worker"] and set(s["model_loads_per_worker"].values()) == {1}
    assert not (out / ".staging").exists() or not any((out / ".staging").iterdir())
    logged = caplog.text + capsys.readouterr().err
    assert "study " in logged and SECRET_ACCESSION not in logged


def test_resume_skips_complete_and_force_redoes(tree, tmp_path):
    out = tmp_path / "out"
    run_batch([tree], out, fake_config(), workers=0)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/report.json")}
    again = run_batch([tree], out, fake_config(), workers=0)
    assert again.summary["skipped_complete"] == 5 and again.summary["screened_this_run"] == 1
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/report.json")} == stamps
    assert again.summary["counts"]["failed"] == 1  # the crashing study is retried, fails again
    forced = run_batch([tree], out, fake_config(), workers=0, force=True)
    assert forced.summary["skipped_complete"] == 0 and forced.summary["screened_this_run"] == 6
    assert all(p.stat().st_mtime_ns != t for p, t in stamps.items())


def test_incomplete_report_is_redone(tree, tmp_path):
    out = tmp_path / "out"
    run_batch([tree], out, fake_config(), workers=0)
    victim = sorted(out.glob("*/report.json"))[0]
    victim.write_text('{"decision": "nega')  # as if truncated by a crash of some other tool
    res = run_batch([tree], out, fake_config(), workers=0)
    assert res.summary["skipped_complete"] == 4
    assert json.loads(victim.read_text())["decision"] in ("negative", "flagged", "indeterminate")


def test_local_processes_load_model_once_and_survive_a_dead_worker(tmp_path, monkeypatch):
    root = tmp_path / "in"
    for i in range(8):
        make_fake_study(root, f"s{i}", "lesion" if i % 2 else "normal", i / 10)
    make_fake_study(root, "zz-die", "die", 0.0)
    log = tmp_path / "loads.txt"
    monkeypatch.setenv("FAKE_LOAD_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path.parent))
    out = tmp_path / "out"
    res = run_batch([root], out, fake_config(), workers=2)
    s = res.summary
    assert s["counts"]["failed"] == 1 and s["failures"][0]["stage"] == "worker_died"
    assert s["counts"]["negative"] + s["counts"]["flagged"] == 8
    assert len(list(out.glob("*/report.json"))) == 8
    # Each worker process loaded the model exactly once, whatever number of studies it ran.
    assert set(s["model_loads_per_worker"].values()) == {1}
    pids = log.read_text().split()
    assert len(pids) == len(set(pids))
    ran = [r for r in res.records if r["status"] == "done"]
    assert len(ran) > len({r["worker"]["pid"] for r in ran})  # some worker ran several studies


def test_manifest_rows_missing_inputs_fail_closed(tmp_path):
    root = tmp_path / "in"
    good = make_fake_study(root, "g", "normal", 0.2)
    manifest = tmp_path / "cases.csv"
    manifest.write_text("study_id,label,pathology,inputs,mask,notes\n"
                        f"ok,normal,,{good.relative_to(tmp_path)},,\n"
                        "gone,abnormal,x,in/nothing-here.nii.gz,,\n")
    res = run_batch([manifest], tmp_path / "out", fake_config(), workers=0)
    assert res.summary["counts"]["negative"] == 1 and res.summary["counts"]["failed"] == 1
    failed = [r for r in res.records if r["status"] == "failed"][0]
    assert failed["case_id"] == "gone" and failed["error"]["stage"] == "discover"


def test_folder_of_unreadable_files_is_a_failed_row(tmp_path):
    from test_batch_fakes import make_dicom_study, toy_config

    root = tmp_path / "dicom"
    make_dicom_study(root, "good", bright=True, seed=1)
    make_dicom_study(root, "junk", bright=False, corrupt="garbage", seed=2)
    out = tmp_path / "out"
    res = run_batch([root], out, toy_config(), workers=0)
    s = res.summary
    assert s["studies"] == 2 and s["counts"]["flagged"] == 1
    # Either io rejects every file (no study forms -> failed at discovery) or the study forms
    # and cannot be loaded (indeterminate): never negative, never silently dropped.
    assert s["counts"]["failed"] + s["counts"]["indeterminate"] == 1
    wl = json.loads((out / "worklist.json").read_text())["studies"]
    assert [w["decision"] for w in wl][0] == "flagged" and wl[1]["decision"] != "negative"
    if s["counts"]["failed"]:
        f = s["failures"][0]
        assert f["stage"] == "discover" and f["where"].endswith("junk")
        assert (out / "errors" / f"{f['key']}.json").exists()


def test_rerun_with_other_config_refuses_to_mix_results(tree, tmp_path):
    from screener.batch import IdentityMismatchError

    out = tmp_path / "out"
    run_batch([tree], out, fake_config(), workers=0)
    other = fake_config()
    other["decide"] = dict(other.get("decide") or {}, voxel_threshold=0.9)
    with pytest.raises(IdentityMismatchError, match="config_sha256"):
        run_batch([tree], out, other, workers=0)
    # Run-only settings (batch section) do not change the identity.
    same = fake_config()
    same["batch"]["threads_per_worker"] = 2
    assert run_batch([tree], out, same, workers=0).summary["skipped_complete"] == 5
    assert run_batch([tree], out, other, workers=0, force=True).summary["skipped_complete"] == 0


def test_a_pool_found_broken_at_submit_is_restarted_and_no_task_is_lost(monkeypatch):
    """A worker can die between one completion and the next submit: then submit() itself
    raises BrokenProcessPool. That used to escape run_local and stop the whole batch (the
    dead-worker test above failed about 1 run in 6); now the task that never started goes back
    to its queue and the pool restarts."""
    import concurrent.futures
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool
    from types import SimpleNamespace

    from screener.batching import executors

    pools = []

    class FlakyPool:  # runs tasks at submit; the first pool breaks at its third submit
        def __init__(self, *args, **kwargs):
            self.submits = 0
            pools.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, fn, *args):
            self.submits += 1
            if len(pools) == 1 and self.submits == 3:
                raise BrokenProcessPool("a child process terminated abruptly")
            fut: Future = Future()
            fut.set_result(fn(*args))
            return fut

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", FlakyPool)
    monkeypatch.setattr(executors, "run_task", lambda task, settings: {"key": task.key, "status": "done"})
    tasks = [SimpleNamespace(key=f"k{i}") for i in range(6)]
    records = list(executors.run_local(tasks, SimpleNamespace(threads_per_worker=1), 2))
    assert sorted(r["key"] for r in records) == [t.key for t in tasks]
    assert all(r["status"] == "done" for r in records) and len(pools) == 2
