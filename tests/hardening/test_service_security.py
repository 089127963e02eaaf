"""The DICOM service's doors: TLS with client certificates, the calling-AE whitelist over TLS,
the maximum PDU size it advertises. (Plain TLS, association limit and config validation are in
tests/pacs/test_limits.py; unknown AE without TLS in tests/pacs/test_serve.py.)"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from screener.config import load_config
from screener.pacs.settings import serve_settings

LOOPBACK = "127.0.0.1"
pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI missing")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A CA, a server and a client certificate signed by it, and a rogue self-signed client."""
    d = tmp_path_factory.mktemp("pki")
    p = {k: d / k for k in ("ca.key", "ca.pem", "srv.key", "srv.pem", "cli.key", "cli.pem",
                            "rogue.key", "rogue.pem")}
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
             "-keyout", str(p["ca.key"]), "-out", str(p["ca.pem"]))
    for who in ("srv", "cli"):
        csr = d / f"{who}.csr"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}", "-keyout",
                 str(p[f"{who}.key"]), "-out", str(csr))
        ext = d / f"{who}.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(p["ca.pem"]), "-CAkey",
                 str(p["ca.key"]), "-CAcreateserial", "-days", "1", "-out", str(p[f"{who}.pem"]),
                 "-extfile", str(ext))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=rogue",
             "-keyout", str(p["rogue.key"]), "-out", str(p["rogue.pem"]))
    return p


@pytest.fixture
def service(tmp_path, pki):
    from screener.pacs.scp import start_scp
    from screener.pacs.service import ServiceCore

    started = []

    def start(**over):
        cfg = load_config()
        cfg["serve"].update({"port": _free_port(), "allowed_calling_aets": ["STORESCU"],
                             "spool_dir": str(tmp_path / "spool"),
                             "results_dir": str(tmp_path / "r"),
                             "state_file": str(tmp_path / "s.sqlite"), "min_free_disk_bytes": 0,
                             **over})
        settings = serve_settings(cfg)
        core = ServiceCore(settings, cfg)
        server, _ = start_scp(core, settings)
        started.append((core, server))
        return settings

    yield start
    for core, server in started:
        server.shutdown()
        core.state.close()


def _client_ctx(pki, cert: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki["ca.pem"]))
    ctx.check_hostname = False
    if cert:
        ctx.load_cert_chain(str(pki[f"{cert}.pem"]), str(pki[f"{cert}.key"]))
    return ctx


def _associate(port: int, ctx: ssl.SSLContext | None, aet: str = "STORESCU"):
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title=aet)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 5
    return ae.associate(LOOPBACK, port, tls_args=(ctx, None) if ctx else None)


def test_tls_with_required_client_certificate(service, pki):
    s = service(tls={"enabled": True, "cert_file": str(pki["srv.pem"]),
                     "key_file": str(pki["srv.key"]), "ca_file": str(pki["ca.pem"]),
                     "require_client_cert": True})
    ok = _associate(s.port, _client_ctx(pki, "cli"))
    assert ok.is_established and ok.send_c_echo().Status == 0
    ok.release()
    for ctx in (_client_ctx(pki, None), _client_ctx(pki, "rogue"), None):
        a = _associate(s.port, ctx)  # no certificate, one the CA did not sign, or no TLS
        assert not a.is_established
    time.sleep(0.2)
    again = _associate(s.port, _client_ctx(pki, "cli"))  # the service still serves
    assert again.is_established
    again.release()


def test_client_refuses_a_server_it_cannot_verify(service, pki):
    s = service(tls={"enabled": True, "cert_file": str(pki["rogue.pem"]),
                     "key_file": str(pki["rogue.key"])})
    a = _associate(s.port, _client_ctx(pki, None))  # server cert not signed by the client's CA
    assert not a.is_established


def test_whitelist_applies_over_tls_too(service, pki):
    s = service(tls={"enabled": True, "cert_file": str(pki["srv.pem"]),
                     "key_file": str(pki["srv.key"])})
    bad = _associate(s.port, _client_ctx(pki, None), aet="INTRUDER")
    assert not bad.is_established and bad.is_rejected
    good = _associate(s.port, _client_ctx(pki, None))
    assert good.is_established
    good.release()


def test_maximum_pdu_size_is_advertised(service):
    s = service(max_pdu_size=32768)
    a = _associate(s.port, None)
    assert a.is_established
    assert a.acceptor.maximum_length == 32768
    a.release()
    assert serve_settings(load_config() | {"serve": {**load_config()["serve"],
                                                     "allowed_calling_aets": ["X"]}}
                          ).max_pdu_size == 65536  # the default is bounded, not 0 (unlimited)


def test_ca_without_required_client_cert_still_refuses_forged_certificates(service, pki):
    """A CA alone verifies what clients present (the settings promise it): an unsigned client
    certificate is refused; clients without one, or with a signed one, get in."""
    s = service(tls={"enabled": True, "cert_file": str(pki["srv.pem"]),
                     "key_file": str(pki["srv.key"]), "ca_file": str(pki["ca.pem"])})
    assert not _associate(s.port, _client_ctx(pki, "rogue")).is_established
    for who in (None, "cli"):
        a = _associate(s.port, _client_ctx(pki, who))
        assert a.is_established
        a.release()
