"""`screener serve` as a real process, fed by dcmtk's storescu and pynetdicom on 127.0.0.1.

Load and faults: concurrent associations, SIGKILL mid-transfer and mid-screening, unknown
calling AE, malformed datasets, SIGTERM. Screening is the stand-in of pacs_fakes.py (it logs
each completed screening), so these tests measure the service itself.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
import pytest

from pacs_support import LOOPBACK, make_study, storescu
from pacs_fakes import calls

pytestmark = pytest.mark.services

PHI = ("Doe^Jane", "Doe", "PID-0001", "19700101", "ACC-0001")


def spooled_sops(spool: Path) -> set[str]:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
            for p in spool.rglob("*.dcm") if "_own" not in p.parts}


def source_sops(files: list[Path]) -> set[str]:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files}


def wait_for(cond, timeout: float, what: str, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def assert_no_phi(text: str) -> None:
    for ident in PHI:
        assert ident not in text, f"patient identifier {ident!r} in the service log"


def test_ten_concurrent_associations_of_fifty_instances(tmp_path, serve_factory):
    svc = serve_factory().start()
    studies = [make_study(tmp_path / f"study{i}", n_slices=50, size=24, seed=i) for i in range(10)]
    t0 = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda files: storescu(svc.port, files), studies))
    send_s = time.monotonic() - t0
    for r in results:
        assert r.returncode == 0, r.stderr[-500:]
    wait_for(lambda: len(calls(svc.results)) >= 10, 60, "10 screenings")
    time.sleep(1.0)  # anything extra would show up now
    expected = set().union(*(source_sops(f) for f in studies))
    assert spooled_sops(svc.work / "spool") == expected  # every instance on disk
    done = calls(svc.results)
    assert sorted(n for _, n in done) == [50] * 10  # each study screened once, complete
    assert len({uid for uid, _ in done}) == 10
    st = svc.state()
    assert st.instance_count() == 500 and all(s.screen_count == 1 for s in st.studies())
    st.close()
    print(f"\n10 associations x 50 instances stored in {send_s:.1f} s "
          f"({500 / send_s:.0f} instances/s, each fsynced before acknowledgement)")
    assert svc.stop() == 0
    assert_no_phi(svc.log_text())


def _acknowledged(storescu_stdout: str) -> list[str]:
    """Files storescu got a success response for (parsed from its -v log)."""
    acked, current = [], None
    for line in storescu_stdout.splitlines():
        m = re.search(r"Sending file: (.+)$", line)
        if m:
            current = m.group(1).strip()
        elif "Received Store Response (Success)" in line and current:
            acked.append(current)
            current = None
    return acked


def test_sigkill_mid_transfer_then_restart_loses_nothing(tmp_path, serve_factory):
    svc = serve_factory().start()
    files = make_study(tmp_path / "study", n_slices=60, size=48)
    sender = subprocess.Popen(["storescu", "-v", "-aet", "STORESCU", "-aec", "SCREENER", "-nh",
                               LOOPBACK, str(svc.port), *map(str, files)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: len(list((svc.work / "spool").rglob("*.dcm"))) >= 15, 60, "15 spooled",
             step=0.01)
    svc.stop(signal.SIGKILL)
    out, _ = sender.communicate(timeout=60)
    acked = _acknowledged(out)
    assert 10 <= len(acked) < len(files), "the kill should land mid-transfer"
    # Every acknowledged instance is on disk, even before restart.
    assert source_sops([Path(a) for a in acked]) <= spooled_sops(svc.work / "spool")
    assert calls(svc.results) == []
    svc.start()
    r = storescu(svc.port, files)  # the sender re-sends the whole study
    assert r.returncode == 0, r.stderr[-500:]
    wait_for(lambda: calls(svc.results), 30, "the screening")
    time.sleep(3.0)  # longer than the quiet period: a second screening would show now
    # The complete study is screened exactly once. When the re-send starts later than the quiet
    # period after the restart (a loaded machine), the spooled part is screened first: that is
    # the service doing its job, so an earlier, smaller screening is allowed.
    got = calls(svc.results)
    assert got[-1][1] == 60 and [n for _, n in got].count(60) == 1, got
    assert len({uid for uid, _ in got}) == 1
    assert spooled_sops(svc.work / "spool") == source_sops(files)
    assert svc.stop() == 0
    assert_no_phi(svc.log_text())


def test_sigkill_mid_screening_then_restart_screens_once(tmp_path, serve_factory):
    svc = serve_factory(env={"FAKE_SCREEN_DELAY_S": "4"}).start()
    files = make_study(tmp_path / "study", n_slices=20, size=24)
    assert storescu(svc.port, files).returncode == 0
    wait_for(lambda: "screening study" in svc.log_text(), 30, "screening to start")
    svc.stop(signal.SIGKILL)
    assert calls(svc.results) == []
    svc.env["FAKE_SCREEN_DELAY_S"] = "0"
    svc.start()
    wait_for(lambda: calls(svc.results), 30, "the screening after restart")
    time.sleep(3.0)
    assert [n for _, n in calls(svc.results)] == [20]
    st = svc.state()
    [row] = st.studies()
    assert row.screen_count == 1 and row.status == "idle"
    st.close()
    assert "1 interrupted screenings to redo" in svc.log_text()
    svc.stop()


def test_late_instance_reopens_study_and_new_report_supersedes(tmp_path, serve_factory):
    from screener.io.dicom_writer import StudyIdentity

    svc = serve_factory().start()
    ident = StudyIdentity()
    first = make_study(tmp_path / "s1", n_slices=10, size=24, identity=ident)
    assert storescu(svc.port, first).returncode == 0
    wait_for(lambda: calls(svc.results), 30, "first screening")
    assert storescu(svc.port, first).returncode == 0  # identical re-send: nothing new
    time.sleep(3.0)
    assert len(calls(svc.results)) == 1
    late = make_study(tmp_path / "s2", n_slices=5, size=24, identity=ident, series_number=2)
    assert storescu(svc.port, late).returncode == 0
    wait_for(lambda: len(calls(svc.results)) == 2, 30, "second screening")
    assert [n for _, n in calls(svc.results)] == [10, 15]
    import json

    [superseded] = list((svc.results / "_superseded").rglob("report.gen*.json"))
    assert json.loads(superseded.read_text())["instances"] == 10
    [current] = list(svc.results.glob("fake-*/report.json"))
    assert json.loads(current.read_text())["instances"] == 15
    wait_for(lambda: ident.study_instance_uid in (svc.results / "worklist.csv").read_text(), 10,
             "the worklist")
    assert "flagged" in (svc.results / "worklist.csv").read_text()
    svc.stop()


def test_unknown_calling_ae_is_rejected(tmp_path, serve_factory):
    svc = serve_factory().start()
    files = make_study(tmp_path / "study", n_slices=4, size=16)
    r = storescu(svc.port, files, aet="INTRUDER")
    assert r.returncode != 0
    assert "reject" in (r.stdout + r.stderr).lower()
    assert not list((svc.work / "spool").rglob("*.dcm"))
    assert storescu(svc.port, files).returncode == 0  # a known AE still gets in
    assert "association from INTRUDER rejected" in svc.log_text() or "INTRUDER" in svc.log_text()
    svc.stop()


def test_malformed_datasets_are_refused_and_service_keeps_serving(tmp_path, serve_factory):
    from pynetdicom import AE
    from pydicom.uid import ExplicitVRLittleEndian

    svc = serve_factory(overrides={"network_timeout_s": 3.0, "acse_timeout_s": 3.0}).start()
    files = make_study(tmp_path / "study", n_slices=6, size=16)
    no_uid = pydicom.dcmread(files[0])
    del no_uid.StudyInstanceUID
    short = pydicom.dcmread(files[1])
    short.PixelData = short.PixelData[:100]
    # An element whose bytes cannot be decoded (US value of 3 bytes): sent as raw bytes.
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    garbage = pydicom.dcmread(files[2])
    garbage[Tag(0x00280010)] = RawDataElement(Tag(0x00280010), "US", 3, b"\x01\x02\x03", 0,
                                              False, True)
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.4", [ExplicitVRLittleEndian])
    statuses = []
    for item in (no_uid, short, garbage):
        assoc = ae.associate(LOOPBACK, svc.port, ae_title="SCREENER")
        assert assoc.is_established
        status = assoc.send_c_store(item)
        statuses.append(int(status.Status) if "Status" in status else None)
        if assoc.is_established:
            assoc.release()
    assert all(s is None or s != 0 for s in statuses), statuses
    assert [s for s in statuses if s is not None], "expected failure statuses"
    # Broken association: connect, send half a PDU, drop the socket.
    import socket

    with socket.create_connection((LOOPBACK, svc.port)) as sock:
        sock.sendall(b"\x01\x00\x00\x00\x10\x00garbage")
    assert svc.proc.poll() is None
    assert storescu(svc.port, files).returncode == 0
    wait_for(lambda: calls(svc.results), 30, "screening of the valid study")
    # The broken association is cleaned up by the ACSE timeout (its slot is not lost).
    wait_for(lambda: "association with  aborted" in svc.log_text()
             or "shorter than expected" in svc.log_text(), 10, "the broken association noticed")
    assert [n for _, n in calls(svc.results)] == [6]
    assert "refused instance" in svc.log_text()
    assert svc.stop() == 0


def test_sigterm_is_a_graceful_stop(tmp_path, serve_factory):
    svc = serve_factory().start()
    t0 = time.monotonic()
    assert svc.stop(signal.SIGTERM) == 0
    assert time.monotonic() - t0 < 15
    assert "stopped" in svc.log_text()
    # SIGTERM in the middle of a transfer: exit 0, every acknowledged instance kept.
    svc.start()
    files = make_study(tmp_path / "study", n_slices=60, size=48)
    sender = subprocess.Popen(["storescu", "-v", "-aet", "STORESCU", "-aec", "SCREENER", "-nh",
                               LOOPBACK, str(svc.port), *map(str, files)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: len(list((svc.work / "spool").rglob("*.dcm"))) >= 10, 60, "10 spooled",
             step=0.01)
    assert svc.stop(signal.SIGTERM) == 0
    out, _ = sender.communicate(timeout=60)
    acked = _acknowledged(out)
    assert len(acked) >= 10
    assert source_sops([Path(a) for a in acked]) <= spooled_sops(svc.work / "spool")
    assert "signal 15 received" in svc.log_text()


def test_study_over_the_time_limit_is_indeterminate_and_the_service_goes_on(tmp_path, serve_factory):
    import json

    svc = serve_factory(overrides={"study_time_limit_s": 2.0},
                        env={"FAKE_SCREEN_DELAY_S": "60"}).start()
    assert storescu(svc.port, make_study(tmp_path / "s", n_slices=4, size=16)).returncode == 0
    st = wait_for(lambda: (s := svc.state()).studies() and s.studies()[0].screen_count == 1 and s,
                  30, "the time limit to end the screening")
    [row] = st.studies()
    st.close()
    report = json.loads(Path(row.report_path).read_text())
    assert row.decision == report["decision"] == "indeterminate"
    assert "time limit" in report["reasons"][0]
    wait_for(lambda: (svc.results / "worklist.csv").exists() and
             "indeterminate" in (svc.results / "worklist.csv").read_text(), 10, "the worklist")
    assert svc.proc.poll() is None
    assert svc.stop() == 0
