"""Bounds and fail-closed behaviour: per-study time limit, crashing or raising pipeline,
association limit, TLS, config validation. In-process (SCP thread + screening child)."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from pacs_support import LOOPBACK, free_port, make_study
from pacs_fakes import calls

from screener.config import ConfigError, load_config
from screener.pacs.runner import ScreeningRunner
from screener.pacs.settings import PipelineSettings, serve_settings

FAKES = PipelineSettings(find_studies="pacs_fakes:find_studies",
                         screen_study="pacs_fakes:screen_study", load_model="pacs_fakes:load_model")


@pytest.fixture
def spooled_study(tmp_path: Path):
    from screener.io.dicom_writer import StudyIdentity
    from screener.pacs.spool import Spool

    ident = StudyIdentity()
    spool = Spool(tmp_path / "spool")
    for p in make_study(tmp_path / "src", n_slices=3, size=8, identity=ident):
        import pydicom

        ds = pydicom.dcmread(p)
        spool.store(ident.study_instance_uid, ds.SeriesInstanceUID, ds.SOPInstanceUID, p.read_bytes())
    return ident.study_instance_uid, spool.study_dir(ident.study_instance_uid)


@pytest.mark.parametrize("env,reason", [
    ({"FAKE_SCREEN_DELAY_S": "30"}, "time limit"),
    ({"FAKE_CRASH": "1"}, "died"),
    ({"FAKE_RAISE": "1"}, "internal error"),
])
def test_unassessed_study_is_indeterminate_and_the_next_one_is_screened(
        tmp_path, spooled_study, monkeypatch, env, reason):
    uid, study_dir = spooled_study
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    results = tmp_path / "results"
    with ScreeningRunner(FAKES, load_config(), time_limit_s=3.0) as runner:
        t0 = time.monotonic()
        res = runner.screen(uid, study_dir, results)
        assert time.monotonic() - t0 < 20
        assert res.report["decision"] == "indeterminate"  # fail closed, never negative
        assert reason in res.report["reasons"][0]
        res.write_fallback()
        on_disk = json.loads((res.report_dir / "report.json").read_text())
        assert on_disk["decision"] == "indeterminate"
        assert res.report_dir.name.startswith("fake-")  # the pipeline's own folder name
        for k in env:
            monkeypatch.delenv(k)
        os.environ.pop("FAKE_SCREEN_DELAY_S", None)
        # The child is restarted (it inherits the environment at start): the next study works.
        runner.stop()
        res2 = runner.screen(uid, study_dir, results)
        assert res2.report["decision"] == "flagged" and not res2.error
    assert [n for _, n in calls(results)] == [3]


def test_missing_pipeline_is_indeterminate_not_negative(tmp_path, spooled_study):
    uid, study_dir = spooled_study
    broken = PipelineSettings(find_studies="pacs_fakes:find_studies",
                              screen_study="no_such_module:screen_study", load_model="")
    with ScreeningRunner(broken, load_config(), time_limit_s=5.0, startup_limit_s=30) as runner:
        res = runner.screen(uid, study_dir, tmp_path / "results")
    assert res.report["decision"] == "indeterminate" and res.error


def _core_and_server(tmp_path: Path, **over):
    from screener.pacs.scp import start_scp
    from screener.pacs.service import ServiceCore

    cfg = load_config()
    cfg["serve"].update({"port": free_port(), "allowed_calling_aets": ["STORESCU"],
                         "spool_dir": str(tmp_path / "spool"), "results_dir": str(tmp_path / "r"),
                         "state_file": str(tmp_path / "s.sqlite"), "min_free_disk_bytes": 0, **over})
    settings = serve_settings(cfg)
    core = ServiceCore(settings, cfg)
    server, handler = start_scp(core, settings)
    return core, server, settings


def test_association_limit(tmp_path):
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    core, server, settings = _core_and_server(tmp_path, max_associations=2)
    try:
        ae = AE(ae_title="STORESCU")
        ae.add_requested_context(Verification)
        held = [ae.associate(LOOPBACK, settings.port) for _ in range(2)]
        assert all(a.is_established for a in held)
        third = ae.associate(LOOPBACK, settings.port)
        assert not third.is_established and third.is_rejected
        for a in held:
            a.release()
        time.sleep(0.5)
        again = ae.associate(LOOPBACK, settings.port)
        assert again.is_established
        again.release()
    finally:
        server.shutdown()
        core.state.close()


def test_tls_listener(tmp_path):
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    core, server, settings = _core_and_server(
        tmp_path, tls={"enabled": True, "cert_file": str(cert), "key_file": str(key)})
    try:
        ae = AE(ae_title="STORESCU")
        ae.add_requested_context(Verification)
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
        ctx.check_hostname = False
        assoc = ae.associate(LOOPBACK, settings.port, tls_args=(ctx, None))
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assoc.release()
        ae.acse_timeout = ae.network_timeout = 3
        plain = ae.associate(LOOPBACK, settings.port)  # no TLS: no association
        assert not plain.is_established
    finally:
        server.shutdown()
        core.state.close()


def test_config_is_validated():
    cfg = load_config()
    with pytest.raises(ConfigError, match="allowed_calling_aets"):
        serve_settings(cfg)  # no whitelist and no explicit allow-any: refuses to start
    cfg["serve"]["allowed_calling_aets"] = ["A" * 17]
    with pytest.raises(ConfigError, match="1..16"):
        serve_settings(cfg)
    cfg["serve"]["allowed_calling_aets"] = ["PACS"]
    cfg["serve"]["tls"] = {"enabled": True}
    with pytest.raises(ConfigError, match="cert_file"):
        serve_settings(cfg)
    cfg["serve"]["tls"] = {"enabled": False}
    cfg["serve"]["typo_key"] = 1
    with pytest.raises(ConfigError, match="unknown"):
        serve_settings(cfg)


def test_example_config_is_valid():
    from screener.config import CONFIG_DIR
    from screener.pacs.settings import watch_settings

    cfg = load_config(CONFIG_DIR / "serve.example.yaml")
    s = serve_settings(cfg)
    assert s.bind_address == "127.0.0.1" and s.allowed_calling_aets
    assert watch_settings(cfg, "http://127.0.0.1:8042").orthanc_url
