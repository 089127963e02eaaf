"""`screener serve`: a DICOM Storage SCP that spools, screens and sends results back.

Each C-STORE is checked (the dataset must parse completely and carry valid Study, Series and
SOP Instance UIDs), written durably to the spool and recorded in the state database, and only
then acknowledged. A malformed dataset gets a failure status; a broken association is pynetdicom's
to clean up; neither reaches the rest of the service. Calling AE titles outside the configured
list are rejected at association time.
"""

from __future__ import annotations

import logging
import re
import time
from io import BytesIO
from typing import Any

from screener.pacs.service import OWN_OUTPUTS_DIR, ServiceCore
from screener.pacs.settings import ServeSettings
from screener.pacs.spool import durable_write, short_hash

log = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DATASET_MISMATCH = 0xA900  # required identifiers missing or inconsistent
STATUS_CANNOT_UNDERSTAND = 0xC000

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class RefusedDataset(ValueError):
    """A dataset the service will not acknowledge; `status` is what goes back."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


def _valid_uid(value: Any) -> bool:
    text = str(value or "")
    return 0 < len(text) <= 64 and bool(_UID.match(text))


def check_dataset(data: bytes, affected_sop_uid: str) -> tuple[str, str, str]:
    """Parse an encoded dataset completely and return (study, series, SOP instance) UIDs.

    Raises:
        RefusedDataset: undecodable, identifiers missing or invalid, pixel data shorter than
            its header declares.
    """
    import pydicom

    try:
        ds = pydicom.dcmread(BytesIO(data), force=False)
        for _ in ds.iterall():  # decodes every element, sequences included
            pass
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a refusal
        raise RefusedDataset(STATUS_CANNOT_UNDERSTAND, f"undecodable ({type(exc).__name__})") from exc
    uids = []
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        value = ds.get(keyword)
        if not _valid_uid(value):
            raise RefusedDataset(STATUS_DATASET_MISMATCH, f"{keyword} missing or invalid")
        uids.append(str(value))
    if affected_sop_uid and uids[2] != affected_sop_uid:
        raise RefusedDataset(STATUS_DATASET_MISMATCH, "SOPInstanceUID differs from the request")
    try:
        compressed = "PixelData" in ds and ds.file_meta.TransferSyntaxUID.is_compressed
    except Exception as exc:  # noqa: BLE001 - e.g. a UID that is no transfer syntax
        raise RefusedDataset(STATUS_CANNOT_UNDERSTAND, "unknown transfer syntax") from exc
    if "PixelData" in ds and not compressed:
        try:
            frames = int(ds.get("NumberOfFrames") or 1)
            need = (int(ds.Rows) * int(ds.Columns) * int(ds.SamplesPerPixel or 1)
                    * int(ds.BitsAllocated) * frames + 7) // 8
        except Exception as exc:  # noqa: BLE001
            raise RefusedDataset(STATUS_DATASET_MISMATCH, "image pixel module incomplete") from exc
        if len(ds.PixelData or b"") < need:  # an empty element reads as None
            raise RefusedDataset(STATUS_DATASET_MISMATCH, "pixel data shorter than declared")
    return uids[0], uids[1], uids[2]


class StoreHandler:
    """The EVT_C_STORE handler: check, spool durably, record, then acknowledge."""

    def __init__(self, core: ServiceCore, settings: ServeSettings) -> None:
        self.core = core
        self.settings = settings
        self.received = 0
        self.refused = 0

    def __call__(self, event: Any) -> int:
        try:
            return self._store(event)
        except Exception:  # noqa: BLE001 - never let one instance take the service down
            log.exception("C-STORE failed unexpectedly; not acknowledged")
            return STATUS_OUT_OF_RESOURCES

    def _store(self, event: Any) -> int:
        affected = str(getattr(event.request, "AffectedSOPInstanceUID", "") or "")
        if self.core.spool.free_bytes() < self.settings.min_free_disk_bytes:
            log.error("spool disk nearly full: refusing instance %s", short_hash(affected))
            return STATUS_OUT_OF_RESOURCES
        try:
            data = event.encoded_dataset(include_meta=True)
            study_uid, series_uid, sop_uid = check_dataset(data, affected)
        except RefusedDataset as exc:
            self.refused += 1
            log.warning("refused instance %s from %s: %s", short_hash(affected),
                        event.assoc.requestor.ae_title, exc)
            return exc.status
        if self.core.state.is_own_output(sop_uid):
            # Our own SR/SEG routed back to us: keep it, but it does not re-open the study.
            durable_write(self.core.spool.root / OWN_OUTPUTS_DIR / f"{short_hash(sop_uid, 32)}.dcm", data)
            return STATUS_SUCCESS
        with self.core.spool.study_lock(study_uid):  # not pruned between store and record
            stored = self.core.spool.store(study_uid, series_uid, sop_uid, data)
            reopened = self.core.state.record_instance(sop_uid, study_uid, series_uid,
                                                       str(stored.path), stored.sha256)
        self.received += 1
        log.debug("stored %s of study %s%s", short_hash(sop_uid), short_hash(study_uid),
                  "" if reopened else " (identical duplicate)")
        return STATUS_SUCCESS


def _ssl_context(settings: ServeSettings) -> Any:
    if not settings.tls.enabled:
        return None
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(settings.tls.cert_file, settings.tls.key_file)
    if settings.tls.ca_file:
        ctx.load_verify_locations(settings.tls.ca_file)
    # With a CA, a certificate a client presents is verified (a forged one is refused);
    # require_client_cert makes presenting one mandatory.
    ctx.verify_mode = (ssl.CERT_REQUIRED if settings.tls.require_client_cert else
                       ssl.CERT_OPTIONAL if settings.tls.ca_file else ssl.CERT_NONE)
    return ctx


def build_ae(settings: ServeSettings) -> Any:
    """The pynetdicom AE: storage + verification, limits, timeouts, calling-AE whitelist."""
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title=settings.ae_title)
    for cx in StoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    ae.maximum_associations = settings.max_associations
    ae.maximum_pdu_size = settings.max_pdu_size
    ae.acse_timeout = settings.acse_timeout_s
    ae.dimse_timeout = settings.dimse_timeout_s
    ae.network_timeout = settings.network_timeout_s
    if not settings.allow_any_calling_aet:
        ae.require_calling_aet = list(settings.allowed_calling_aets)
    return ae


def start_scp(core: ServiceCore, settings: ServeSettings) -> tuple[Any, StoreHandler]:
    """Start listening (non-blocking). Returns the server and the store handler."""
    from pynetdicom import evt

    handler = StoreHandler(core, settings)

    def on_rejected(event: Any) -> None:
        log.warning("association from %s rejected", event.assoc.requestor.ae_title)

    def on_aborted(event: Any) -> None:
        log.warning("association with %s aborted", event.assoc.requestor.ae_title)

    handlers = [(evt.EVT_C_STORE, handler), (evt.EVT_C_ECHO, lambda _e: STATUS_SUCCESS),
                (evt.EVT_REJECTED, on_rejected), (evt.EVT_ABORTED, on_aborted)]
    ae = build_ae(settings)
    server = ae.start_server((settings.bind_address, settings.port), block=False,
                             evt_handlers=handlers, ssl_context=_ssl_context(settings))
    log.info("listening as %s on %s:%d (%s)", settings.ae_title, settings.bind_address,
             settings.port, "TLS" if settings.tls.enabled else "no TLS")
    return server, handler


def stop_scp(server: Any, grace_s: float = 10.0) -> None:
    """Stop accepting; give associations in progress `grace_s` to finish, then abort them."""
    server.shutdown()
    deadline = time.monotonic() + grace_s
    while server.active_associations and time.monotonic() < deadline:
        time.sleep(0.1)
    for assoc in server.active_associations:
        assoc.abort()


def run_serve_cli(args: Any) -> int:
    """Entry point of `screener serve --config FILE`."""
    from screener.config import ConfigError, load_config
    from screener.pacs.settings import serve_settings

    try:
        cfg = load_config(args.config)
        settings = serve_settings(cfg)
    except ConfigError as exc:
        log.error("%s", exc)
        print(f"screener serve: {exc}")
        return 2
    core = ServiceCore(settings, cfg)
    core.install_signal_handlers()
    core.recover()
    try:
        server, handler = start_scp(core, settings)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.bind_address, settings.port, exc)
        core.shutdown()
        return 2
    try:
        core.start_worker()
        while not core.stop_event.wait(1.0):
            pass
    finally:
        stop_scp(server)
        core.shutdown()
        log.info("served: %d instances stored, %d refused", handler.received, handler.refused)
    return 0
