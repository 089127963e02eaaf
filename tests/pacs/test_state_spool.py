"""Spool durability and state bookkeeping: generations, exactly-once, recovery, delivery."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from screener.pacs.spool import Spool, durable_write, short_hash
from screener.pacs.state import ServiceState


def test_durable_write_is_atomic_and_leaves_no_temporaries(tmp_path: Path):
    p = tmp_path / "a" / "b" / "x.dcm"
    durable_write(p, b"one")
    durable_write(p, b"two")
    assert p.read_bytes() == b"two"
    assert [q.name for q in p.parent.iterdir()] == ["x.dcm"]


def test_spool_names_cannot_escape_the_spool(tmp_path: Path):
    spool = Spool(tmp_path / "spool")
    got = spool.store("../../etc", "../passwd", "/abs/../../x", b"data")
    assert got.path.resolve().is_relative_to((tmp_path / "spool").resolve())
    assert "etc" not in str(got.path) and got.size == 4
    (spool.study_dir("../../etc") / ".tmp-crash.part").write_bytes(b"half")
    assert spool.remove_temporaries() == 1


def test_generations_duplicates_and_exactly_once(tmp_path: Path):
    st = ServiceState(tmp_path / "state.sqlite")
    t0 = time.time() - 100
    assert st.record_instance("1.1", "9", "8", "p1", "h1", now=t0)
    assert st.record_instance("1.2", "9", "8", "p2", "h2", now=t0)
    assert not st.record_instance("1.2", "9", "8", "p2", "h2", now=t0)  # identical duplicate
    assert st.due_studies(10.0) == ["9"]
    with st.holding("9"):  # being fetched: not due, cannot be claimed
        assert st.due_studies(10.0) == [] and st.claim("9") is None
    assert st.due_studies(10.0) == ["9"]
    gen = st.claim("9")
    assert gen == 2 and st.claim("9") is None  # claimed once
    assert st.due_studies(10.0) == []
    st.complete("9", gen, t0, "flagged", "r.json", [("5.5", "sr", "sr.dcm")], ("stow",))
    assert st.due_studies(10.0, now=time.time() + 100) == []  # screened: not due again
    assert st.is_own_output("5.5")
    # a late instance re-opens the study; a changed instance (same UID, new bytes) does too
    assert st.record_instance("1.3", "9", "8", "p3", "h3")
    assert st.due_studies(10.0) == []  # quiet period not over
    assert st.due_studies(10.0, now=time.time() + 11) == ["9"]
    gen2 = st.claim("9")
    st.complete("9", gen2, t0, "negative", "r.json", [], ())
    assert [s[1] for s in st.screenings("9")] == [2, 3]
    assert st.study("9").screen_count == 2
    st.close()


def test_interrupted_screening_is_redone_after_restart(tmp_path: Path):
    st = ServiceState(tmp_path / "s.sqlite")
    st.record_instance("1.1", "9", "8", "p", "h", now=time.time() - 100)
    assert st.claim("9") == 1
    st.close()  # "crash" while screening
    st = ServiceState(tmp_path / "s.sqlite")
    assert st.due_studies(1.0) == []  # still marked screening
    assert st.recover() == ["9"]
    assert st.due_studies(1.0) == []  # the quiet period restarts with the service
    assert st.due_studies(1.0, now=time.time() + 2) == ["9"]
    st.close()


def test_delivery_retries_then_gives_up(tmp_path: Path):
    st = ServiceState(tmp_path / "s.sqlite")
    st.record_instance("1.1", "9", "8", "p", "h")
    st.complete("9", st.claim("9") or 0, 0.0, "flagged", "r", [("7.1", "sr", "sr.dcm")],
                ("c_store", "stow"))
    [out] = st.pending_outputs()
    assert out.pending == ("c_store", "stow")
    st.output_delivered("7.1", "c_store")
    assert st.pending_outputs()[0].pending == ("stow",)
    assert st.output_failed("7.1", "down", retry_in_s=60, max_attempts=2)
    assert st.pending_outputs() == []  # waiting for its retry time
    assert len(st.pending_outputs(now=time.time() + 61)) == 1
    assert not st.output_failed("7.1", "down", retry_in_s=0, max_attempts=2)  # given up
    assert st.pending_outputs(now=time.time() + 1000) == []
    st.close()


@pytest.mark.parametrize("uid", ["1.2.3", "../../x"])
def test_short_hash_is_path_safe(uid: str):
    h = short_hash(uid)
    assert len(h) == 16 and h.isalnum()


def _screened(st: ServiceState, spool: Spool, study: str, sops: list[str], received: float,
              outputs: tuple[tuple[str, str, str], ...] = (), dests: tuple[str, ...] = ()
              ) -> list[Path]:
    paths = []
    for sop in sops:
        stored = spool.store(study, "8", sop, b"dicom " + sop.encode())
        st.record_instance(sop, study, "8", str(stored.path), stored.sha256, now=received)
        paths.append(stored.path)
    st.complete(study, st.claim(study) or 0, received, "negative", "r.json", list(outputs), dests)
    return paths


def test_spool_retention_deletes_only_screened_delivered_old_studies(tmp_path: Path):
    from screener.pacs.settings import WorkerSettings
    from screener.pacs.worker import StudyWorker

    st, spool = ServiceState(tmp_path / "s.sqlite"), Spool(tmp_path / "spool")
    day, now = 86400.0, time.time()
    old = _screened(st, spool, "old", ["1.1", "1.2"], now - 40 * day)
    recent = _screened(st, spool, "recent", ["2.1"], now - 5 * day)
    undelivered = _screened(st, spool, "undelivered", ["3.1"], now - 40 * day,
                            (("3.9", "sr", "sr.dcm"),), ("stow",))
    st.record_instance("4.1", "unscreened", "8", str(spool.store("unscreened", "8", "4.1", b"x").path),
                       "h", now=now - 40 * day)
    _screened(st, spool, "reopened", ["5.1"], now - 40 * day)
    st.record_instance("5.2", "reopened", "8", str(spool.store("reopened", "8", "5.2", b"y").path),
                       "h", now=now - 39 * day)  # a late instance, not screened yet
    keep = WorkerSettings(results_dir=str(tmp_path / "results"), spool_retention_days=0.0)
    assert StudyWorker(keep, st, spool, runner=None).prune_spool(now) == 0  # 0 = keep forever
    worker = StudyWorker(WorkerSettings(results_dir=str(tmp_path / "results"),
                                        spool_retention_days=30.0), st, spool, runner=None)
    assert worker.prune_spool(now) == 1
    assert not any(p.exists() for p in old) and not spool.study_dir("old").exists()
    assert st.known_sops("old") == set() and st.study("old").screen_count == 1  # history stays
    assert all(p.exists() for p in recent + undelivered)
    assert st.known_sops("unscreened") == {"4.1"} and st.known_sops("reopened") == {"5.1", "5.2"}
    assert st.output_failed("3.9", "down", retry_in_s=0, max_attempts=5)
    st.output_delivered("3.9", "stow")  # delivered after a failed try: its instances may go too
    assert worker.prune_spool(now) == 1 and not any(p.exists() for p in undelivered)
    given_up = _screened(st, spool, "given-up", ["6.1"], now - 40 * day,
                         (("6.9", "sr", "sr.dcm"),), ("stow",))
    assert not st.output_failed("6.9", "down", retry_in_s=0, max_attempts=1)  # never delivered
    assert worker.prune_spool(now) == 0 and all(p.exists() for p in given_up)
    assert worker.prune_spool(now) == 0  # nothing left to do; a re-sent instance re-opens
    assert st.record_instance("1.1", "old", "8", "p", "h", now=now)
    assert "old" in st.due_studies(10.0, now=now + 11)
    st.close()


def test_pruning_waits_for_an_instance_being_stored(tmp_path: Path):
    """The study lock spans store + record: a prune cannot fall between them."""
    import threading

    from screener.pacs.settings import WorkerSettings
    from screener.pacs.worker import StudyWorker

    st, spool = ServiceState(tmp_path / "s.sqlite"), Spool(tmp_path / "spool")
    now = time.time()
    _screened(st, spool, "9", ["1.1"], now - 40 * 86400.0)
    worker = StudyWorker(WorkerSettings(results_dir=str(tmp_path / "r"), spool_retention_days=30.0),
                         st, spool, runner=None)
    done = []
    with spool.study_lock("9"):  # an SCP thread between storing and recording "1.2"
        stored = spool.store("9", "8", "1.2", b"late")
        t = threading.Thread(target=lambda: done.append(worker.prune_spool(now)))
        t.start()
        t.join(0.3)
        assert t.is_alive()  # the prune waits
        st.record_instance("1.2", "9", "8", str(stored.path), stored.sha256, now=now)
    t.join(5)
    assert done == [0] and stored.path.exists()  # the study re-opened: nothing deleted
    st.close()
