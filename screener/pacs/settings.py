"""Typed settings of the PACS-side service (`serve:` and `watch:` sections of the config).

Defaults live in configs/default.yaml; these frozen dataclasses validate them (unknown keys and
wrong types are errors, see `screener.config.section`). `validate()` adds the cross-field checks
that a type alone cannot express, so a service never starts on a config it would misread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from screener.config import ConfigError, section


@dataclass(frozen=True)
class PipelineSettings:
    """Where the screening functions come from, as "module:function" (injectable for tests)."""

    find_studies: str = "screener.io:find_studies"
    screen_study: str = "screener.pipeline:screen_study"
    load_model: str = "screener.pipeline:load_model"  # "" = call screen_study with model=None
    device: str = "cpu"
    torch_threads: int = 1


@dataclass(frozen=True)
class TlsSettings:
    """TLS for the DICOM listener (pynetdicom with an ssl.SSLContext)."""

    enabled: bool = False
    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""  # client certificates presented must be signed by it (verified)
    require_client_cert: bool = False  # clients must present one (needs ca_file)


@dataclass(frozen=True)
class CStoreDestination:
    """A DICOM node that receives the SR and SEG by C-STORE."""

    ae_title: str = ""
    host: str = "127.0.0.1"
    port: int = 104


@dataclass(frozen=True)
class WorkerSettings:
    """What serve and watch share: folders, completion, time limit, result delivery."""

    spool_dir: str = "screener-service/spool"
    results_dir: str = "screener-service/results"
    state_file: str = "screener-service/state.sqlite"
    quiet_period_s: float = 10.0
    poll_interval_s: float = 0.5
    study_time_limit_s: float = 900.0
    send_retry_s: float = 30.0
    send_max_attempts: int = 20
    # 0 = keep received instances forever; otherwise a study's spooled instances are deleted
    # this many days after its last instance arrived, once it is screened and its results
    # delivered (reports, SR and SEG in results_dir are never deleted).
    spool_retention_days: float = 0.0
    c_store: CStoreDestination | None = None
    stow_url: str = ""
    calling_ae_title: str = "SCREENER"
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)


@dataclass(frozen=True)
class ServeSettings(WorkerSettings):
    """`screener serve`: a Storage SCP."""

    ae_title: str = "SCREENER"
    bind_address: str = "127.0.0.1"
    port: int = 11112
    allowed_calling_aets: list[str] = field(default_factory=list)
    allow_any_calling_aet: bool = False
    max_associations: int = 10
    max_pdu_size: int = 65536
    acse_timeout_s: float = 30.0
    dimse_timeout_s: float = 30.0
    network_timeout_s: float = 60.0
    min_free_disk_bytes: int = 1073741824
    tls: TlsSettings = field(default_factory=TlsSettings)


@dataclass(frozen=True)
class WatchSettings(WorkerSettings):
    """`screener watch`: follow an Orthanc server's /changes."""

    orthanc_url: str = ""
    dicomweb_root: str = "dicom-web"
    changes_limit: int = 100
    start_from: str = "latest"  # "latest": only studies that become stable from now; "beginning"
    request_timeout_s: float = 60.0


def _check_worker(s: WorkerSettings, name: str) -> None:
    if s.quiet_period_s < 0 or s.poll_interval_s <= 0 or s.study_time_limit_s <= 0:
        raise ConfigError(f"{name}: quiet_period_s >= 0, poll_interval_s > 0 and "
                          "study_time_limit_s > 0 are required")
    if s.send_max_attempts < 1 or s.send_retry_s < 0:
        raise ConfigError(f"{name}: send_max_attempts >= 1 and send_retry_s >= 0 are required")
    if s.spool_retention_days < 0:
        raise ConfigError(f"{name}.spool_retention_days must be >= 0 (0 = keep forever)")
    if s.c_store is not None and (not s.c_store.ae_title or not 0 < s.c_store.port < 65536):
        raise ConfigError(f"{name}.c_store needs ae_title and a port in 1..65535")
    if s.stow_url and not s.stow_url.startswith(("http://", "https://")):
        raise ConfigError(f"{name}.stow_url must be an http(s) URL")
    if ":" not in s.pipeline.screen_study or ":" not in s.pipeline.find_studies:
        raise ConfigError(f"{name}.pipeline functions must be given as 'module:function'")


def serve_settings(cfg: dict[str, Any]) -> ServeSettings:
    """Validated `serve:` section.

    Raises:
        ConfigError: on unknown keys, wrong types or inconsistent values.
    """
    s = section(cfg, "serve", ServeSettings)
    _check_worker(s, "serve")
    if not 0 <= s.port < 65536:
        raise ConfigError("serve.port must be in 0..65535")
    if not s.allowed_calling_aets and not s.allow_any_calling_aet:
        raise ConfigError("serve: list the calling AE titles allowed to send "
                          "(serve.allowed_calling_aets) or set allow_any_calling_aet: true")
    for aet in [s.ae_title, *s.allowed_calling_aets]:
        if not aet.strip() or len(aet) > 16:
            raise ConfigError(f"serve: AE title {aet!r} must be 1..16 characters")
    if s.max_associations < 1 or s.max_pdu_size < 0:
        raise ConfigError("serve: max_associations >= 1 and max_pdu_size >= 0 (0 = unlimited)")
    if s.tls.enabled and not (s.tls.cert_file and s.tls.key_file):
        raise ConfigError("serve.tls: cert_file and key_file are required when enabled")
    if s.tls.require_client_cert and not s.tls.ca_file:
        raise ConfigError("serve.tls: require_client_cert needs ca_file")
    return s


def watch_settings(cfg: dict[str, Any], orthanc_url: str | None = None) -> WatchSettings:
    """Validated `watch:` section; `orthanc_url` (from the command line) overrides the file."""
    data = dict(cfg.get("watch") or {})
    if orthanc_url:
        data["orthanc_url"] = orthanc_url
    s = section({"watch": data}, "watch", WatchSettings)
    _check_worker(s, "watch")
    if not s.orthanc_url.startswith(("http://", "https://")):
        raise ConfigError("watch: an http(s) Orthanc URL is required (--orthanc URL)")
    if s.start_from not in ("latest", "beginning"):
        raise ConfigError("watch.start_from must be 'latest' or 'beginning'")
    if s.changes_limit < 1:
        raise ConfigError("watch.changes_limit must be >= 1")
    return s
