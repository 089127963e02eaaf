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
