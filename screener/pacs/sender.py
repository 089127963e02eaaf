"""Deliver result objects (SR, SEG): C-STORE to a DICOM node, STOW-RS to a DICOMweb server.

Delivery is idempotent: the same file (same SOPInstanceUID) is sent again after a failure or a
restart, which a PACS stores once. Failures raise `SendError`; the caller retries later.
"""

from __future__ import annotations

import logging
from pathlib import Path

from screener.pacs.settings import CStoreDestination
from screener.pacs.spool import short_hash

log = logging.getLogger(__name__)

# Statuses a Storage SCP returns on success or with a warning the object was still stored.
_STORED = {0x0000, 0xB000, 0xB007, 0xB006}


class SendError(RuntimeError):
    """A result object could not be delivered (the caller retries later)."""


def c_store(path: Path, dest: CStoreDestination, calling_ae_title: str,
            timeout_s: float = 30.0) -> None:
    """Send one DICOM file by C-STORE.

    Raises:
        SendError: association refused or failed, or a failure status.
    """
    import pydicom
    from pynetdicom import AE
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    ds = pydicom.dcmread(path)
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    syntax = ds.file_meta.TransferSyntaxUID
    syntaxes = list(dict.fromkeys([syntax, ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
    ae.add_requested_context(ds.SOPClassUID, syntaxes)
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
    if not assoc.is_established:
        raise SendError(f"association with {dest.ae_title}@{dest.host}:{dest.port} not established")
    try:
        status = assoc.send_c_store(ds)
    finally:
        if assoc.is_established:
            assoc.release()
    code = getattr(status, "Status", None)
    if code is None:
        raise SendError("no C-STORE response (connection lost or timed out)")
    if int(code) not in _STORED:
        raise SendError(f"C-STORE refused with status 0x{int(code):04X}")
    log.info("sent %s by C-STORE to %s", short_hash(str(ds.SOPInstanceUID)), dest.ae_title)


def stow(path: Path, url: str, timeout_s: float = 60.0) -> None:
    """Store one DICOM file on a DICOMweb server with STOW-RS.

    Raises:
        SendError: HTTP error, connection failure, or an instance the server refused.
    """
    import pydicom
    from dicomweb_client.api import DICOMwebClient

    ds = pydicom.dcmread(path)
    client = DICOMwebClient(url=url, timeout=timeout_s)
    try:
        response = client.store_instances([ds])
    except Exception as exc:  # noqa: BLE001 - requests/HTTP errors of any kind
        raise SendError(f"STOW-RS to {url} failed: {type(exc).__name__}") from exc
    failed = getattr(response, "FailedSOPSequence", None)
    if failed:
        raise SendError(f"STOW-RS to {url}: the server refused the instance")
    log.info("sent %s by STOW-RS", short_hash(str(ds.SOPInstanceUID)))


def deliver(path: Path, destination: str, *, c_store_dest: CStoreDestination | None,
            stow_url: str, calling_ae_title: str) -> None:
    """Send `path` to one named destination ("c_store" or "stow")."""
    if not Path(path).is_file():
        raise SendError("result file is missing")
    if destination == "c_store":
        if c_store_dest is None:
            raise SendError("no C-STORE destination configured")
        c_store(Path(path), c_store_dest, calling_ae_title)
    elif destination == "stow":
        if not stow_url:
            raise SendError("no STOW-RS URL configured")
        stow(Path(path), stow_url)
    else:
        raise SendError(f"unknown destination {destination!r}")
