"""Round trips with a real Orthanc (Debian) started on 127.0.0.1 with its own config and storage.

serve: storescu -> screener serve -> SR + SEG by C-STORE (or STOW-RS) into Orthanc.
watch: upload to Orthanc -> /changes StableStudy -> WADO-RS pull -> STOW-RS of SR + SEG back.
These use the stand-in pipeline (tests/pacs/pacs_fakes.py); test_real_pipeline.py repeats the
must-show round trips with the real one.
"""

from __future__ import annotations

import time

import pytest

from pacs_support import make_study, storescu
from pacs_fakes import calls
from test_serve import assert_no_phi, wait_for

pytestmark = pytest.mark.services


def _result_series(orthanc, study_uid: str) -> list[dict]:
    return [s for s in orthanc.study_series(study_uid) if s.get("Modality") in ("SR", "SEG")]


@pytest.mark.parametrize("via", ["c_store", "stow"])
def test_serve_sends_results_back_into_the_same_study(tmp_path, orthanc_factory, serve_factory, via):
    from screener.io.dicom_writer import StudyIdentity

    orthanc = orthanc_factory()
    dest = ({"c_store": {"ae_title": orthanc.aet, "host": "127.0.0.1", "port": orthanc.dicom_port}}
            if via == "c_store" else {"stow_url": f"{orthanc.url}/dicom-web"})
    svc = serve_factory(overrides=dest, env={"FAKE_OUTPUTS": "1"}).start()
    ident = StudyIdentity()
    files = make_study(tmp_path / "study", n_slices=10, size=24, identity=ident)
    assert storescu(svc.port, files).returncode == 0
    got = wait_for(lambda: len(_result_series(orthanc, ident.study_instance_uid)) == 2 and
                   _result_series(orthanc, ident.study_instance_uid), 60, "SR + SEG in Orthanc")
    assert sorted(s["SeriesNumber"] for s in got) == ["9901", "9902"]
    st = svc.state()
    wait_for(lambda: st.pending_outputs(now=time.time() + 1e6) == [], 10, "deliveries recorded")
    st.close()
    assert len(calls(svc.results)) == 1
    assert svc.stop() == 0
    assert_no_phi(svc.log_text())


def test_delivery_is_retried_until_the_destination_answers(tmp_path, serve_factory, orthanc_factory):
    from screener.io.dicom_writer import StudyIdentity
    from pacs_support import free_port

    dead = free_port()  # nothing listens here yet
    svc = serve_factory(overrides={"c_store": {"ae_title": "ORTHANC", "host": "127.0.0.1",
                                               "port": dead}},
                        env={"FAKE_OUTPUTS": "1"}).start()
    ident = StudyIdentity()
    assert storescu(svc.port, make_study(tmp_path / "s", n_slices=4, size=16,
                                         identity=ident)).returncode == 0
    wait_for(lambda: "delivery of sr" in svc.log_text(), 30, "a failed delivery")
    svc.stop()  # pending deliveries survive a restart
    orthanc = orthanc_factory()
    svc.config.write_text(svc.config.read_text().replace(f"port: {dead}",
                                                         f"port: {orthanc.dicom_port}"))
    svc.start()
    wait_for(lambda: len(_result_series(orthanc, ident.study_instance_uid)) == 2, 60,
             "SR + SEG delivered after restart")
    assert len(calls(svc.results)) == 1
    svc.stop()


def test_watch_screens_a_study_uploaded_to_orthanc_once(tmp_path, orthanc_factory, watch_factory):
    from screener.io.dicom_writer import StudyIdentity

    orthanc = orthanc_factory()
    watch = watch_factory(orthanc.url, env={"FAKE_OUTPUTS": "1"}).start()
    ident = StudyIdentity()
    orthanc.upload(make_study(tmp_path / "study", n_slices=8, size=24, identity=ident))
    wait_for(lambda: len(_result_series(orthanc, ident.study_instance_uid)) == 2, 60,
             "SR + SEG pushed back by STOW-RS")
    # Our SR makes the study "stable" again (StableAge 2 s): that must not re-open it.
    time.sleep(5.0)
    assert [n for _, n in calls(watch.results)] == [8]
    watch.stop()
    watch.start()  # remembered across restarts: nothing is screened again
    time.sleep(3.0)
    assert len(calls(watch.results)) == 1
    # A late series re-opens the study; it is pulled and screened again.
    orthanc.upload(make_study(tmp_path / "late", n_slices=3, size=24, identity=ident,
                              series_number=2))
    wait_for(lambda: len(calls(watch.results)) == 2, 60, "re-screening after a late series")
    assert [n for _, n in calls(watch.results)] == [8, 11]
    assert watch.stop() == 0
    assert_no_phi(watch.log_text())
