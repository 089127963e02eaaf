"""Fixtures for the PACS service tests: free ports, generated studies, the service as a
subprocess, and a real Orthanc (Debian) with its own config, ports and storage in a temp dir.

Everything binds to 127.0.0.1 and every process started here is stopped in teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LOOPBACK = "127.0.0.1"
ORTHANC_BIN = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def make_study(out_dir: Path, *, n_slices: int = 8, size: int = 32, lesion: bool = True,
               contrast: str = "FLAIR", identity: Any = None, series_number: int = 1,
               voxel_mm: float = 2.0, seed: int = 0) -> list[Path]:
    """A small synthetic head-like volume (ellipsoid) with an optional bright lesion."""
    from screener.io.dicom_writer import StudyIdentity, write_mr_series

    rng = np.random.default_rng(seed)
    i, j, k = np.meshgrid(*(np.linspace(-1, 1, n) for n in (size, size, n_slices)), indexing="ij")
    r = i ** 2 + j ** 2 + k ** 2
    vol = np.where(r < 0.8, 400.0, 0.0) + rng.normal(0, 5, r.shape)
    if lesion:
        vol[(i - 0.3) ** 2 + (j - 0.2) ** 2 + k ** 2 < 0.04] = 900.0
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = [-size * voxel_mm / 2, -size * voxel_mm / 2, -n_slices * voxel_mm / 2]
    return write_mr_series(vol, affine, out_dir, identity=identity or StudyIdentity(),
                           contrast=contrast, series_number=series_number)


def wait_echo(port: int, timeout: float = 30.0, calling: str = "STORESCU") -> None:
    """Wait until a DICOM node answers C-ECHO on the port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run(["echoscu", "-aet", calling, "-aec", "ANY-SCP", "-to", "2",
                            LOOPBACK, str(port)], capture_output=True)
        if r.returncode == 0:
            return
        time.sleep(0.2)
    raise TimeoutError(f"no DICOM echo on port {port}")


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return int(proc.returncode)


class ServeProcess:
    """`screener serve` as a subprocess with a generated config.

    The stand-in pipeline (tests/pacs/pacs_fakes.py) is used unless `real_pipeline` is set.
    """

    def __init__(self, work: Path, overrides: dict[str, Any] | None = None,
                 real_pipeline: bool = False, env: dict[str, str] | None = None) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.results = work / "results"
        serve: dict[str, Any] = {
            "port": self.port, "allowed_calling_aets": ["STORESCU", "ORTHANC"],
            "spool_dir": str(work / "spool"), "results_dir": str(self.results),
            "state_file": str(work / "state.sqlite"), "quiet_period_s": 2.0,
            "poll_interval_s": 0.2, "min_free_disk_bytes": 0, "study_time_limit_s": 600.0,
            "send_retry_s": 1.0,
        }
        if not real_pipeline:
            serve["pipeline"] = {"find_studies": "pacs_fakes:find_studies",
                                 "screen_study": "pacs_fakes:screen_study",
                                 "load_model": "pacs_fakes:load_model"}
        serve.update(overrides or {})
        self.config = work / "serve.yaml"
        self.config.write_text(yaml.safe_dump({"serve": serve}))
        self.log = work / "serve.log"
        self.env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{REPO}",
                    "OMP_NUM_THREADS": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> ServeProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "screener", "serve", "--config", str(self.config), "-vv",
             "--log-file", str(self.log)],
            cwd=self.work, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait:
            wait_echo(self.port)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        return stop_process(self.proc, sig) if self.proc is not None else 0

    def state(self) -> Any:
        from screener.pacs.state import ServiceState

        return ServiceState(self.work / "state.sqlite")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def serve_factory(tmp_path: Path):
    procs: list[ServeProcess] = []

    def factory(**kwargs: Any) -> ServeProcess:
        sp = ServeProcess(tmp_path / f"svc{len(procs)}", **kwargs)
        procs.append(sp)
        return sp

    yield factory
    for sp in procs:
        sp.stop(signal.SIGKILL if sp.proc and sp.proc.poll() is None else signal.SIGTERM)


class WatchProcess(ServeProcess):
    """`screener watch --orthanc URL` as a subprocess with a generated config."""

    def __init__(self, work: Path, orthanc_url: str, overrides: dict[str, Any] | None = None,
                 real_pipeline: bool = False, env: dict[str, str] | None = None) -> None:
        super().__init__(work, None, real_pipeline, env)
        self.orthanc_url = orthanc_url
        serve = yaml.safe_load(self.config.read_text())["serve"]
        watch = {k: serve[k] for k in ("spool_dir", "results_dir", "state_file", "send_retry_s")
                 if k in serve}
        if "pipeline" in serve:
            watch["pipeline"] = serve["pipeline"]
        watch.update({"poll_interval_s": 0.5, "start_from": "beginning"})
        watch.update(overrides or {})
        self.config.write_text(yaml.safe_dump({"watch": watch}))

    def start(self, wait: bool = True) -> WatchProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "screener", "watch", "--orthanc", self.orthanc_url,
             "--config", str(self.config), "-vv", "--log-file", str(self.log)],
            cwd=self.work, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait:
            deadline = time.monotonic() + 60
            while "screening process ready" not in self.log_text():
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("watch did not start: " + self.log_text()[-2000:])
                time.sleep(0.2)
        return self


@pytest.fixture
def watch_factory(tmp_path: Path):
    procs: list[WatchProcess] = []

    def factory(orthanc_url: str, **kwargs: Any) -> WatchProcess:
        wp = WatchProcess(tmp_path / f"watch{len(procs)}", orthanc_url, **kwargs)
        procs.append(wp)
        return wp

    yield factory
    for wp in procs:
        wp.stop()


class OrthancProcess:
    """Debian's Orthanc with its own config, ports and storage under `work`."""

    def __init__(self, work: Path, modalities: dict[str, list[Any]] | None = None) -> None:
        self.work = work
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.aet = "ORTHANC"
        cfg = {
            "Name": "screener-test", "StorageDirectory": str(work / "storage"),
            "IndexDirectory": str(work / "index"), "HttpPort": self.http_port,
            "DicomPort": self.dicom_port, "DicomAet": self.aet, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "HttpServerEnabled": True, "DicomServerEnabled": True,
            "StableAge": 2, "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DicomModalities": modalities or {}, "DicomCheckCalledAet": False,
            "HttpsCACertificates": "", "SaveJobs": False, "ConcurrentJobs": 1,
        }
        self.config = work / "orthanc.json"
        self.config.write_text(json.dumps(cfg, indent=2))
        self.url = f"http://{LOOPBACK}:{self.http_port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> OrthancProcess:
        import requests

        self.proc = subprocess.Popen([ORTHANC_BIN, str(self.config)], cwd=self.work,
                                     stdout=(self.work / "orthanc.out").open("wb"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/system", timeout=1).ok:
                    return self
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError("Orthanc did not start: " + (self.work / "orthanc.out").read_text()[-2000:])

    def get(self, path: str) -> Any:
        import requests

        r = requests.get(f"{self.url}{path}", timeout=10)
        r.raise_for_status()
        return r.json()

    def upload(self, paths: list[Path]) -> None:
        import requests

        for p in paths:
            requests.post(f"{self.url}/instances", data=p.read_bytes(), timeout=10).raise_for_status()

    def study_series(self, study_uid: str) -> list[dict[str, Any]]:
        """MainDicomTags of every series of the study (empty when Orthanc does not hold it)."""
        import requests

        r = requests.post(f"{self.url}/tools/lookup", data=study_uid, timeout=10)
        r.raise_for_status()
        ids = [x["ID"] for x in r.json() if x.get("Type") == "Study"]
        if not ids:
            return []
        return [s["MainDicomTags"] | {"Instances": len(s["Instances"]), "ID": s["ID"]}
                for s in self.get(f"/studies/{ids[0]}/series")]

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def orthanc_available() -> bool:
    return Path(ORTHANC_BIN).exists() and DICOMWEB_PLUGIN.exists()


@pytest.fixture
def orthanc_factory(tmp_path: Path):
    if not orthanc_available():
        pytest.skip("Orthanc or its DICOMweb plugin is not installed (scripts/setup.sh)")
    procs: list[OrthancProcess] = []

    def factory(**kwargs: Any) -> OrthancProcess:
        work = tmp_path / f"orthanc{len(procs)}"
        work.mkdir()
        o = OrthancProcess(work, **kwargs)
        procs.append(o)
        return o.start()

    yield factory
    for o in procs:
        o.stop()


def storescu(port: int, files: list[Path] | Path, aet: str = "STORESCU", aec: str = "SCREENER",
             timeout: float = 120.0, extra: list[str] | None = None) -> subprocess.CompletedProcess:
    """dcmtk's storescu: one association sending every file (a folder is scanned)."""
    args = ["storescu", "-aet", aet, "-aec", aec, "-nh", *(extra or [])]
    if isinstance(files, Path) and files.is_dir():
        args += ["+sd", "+r", LOOPBACK, str(port), str(files)]
    else:
        args += [LOOPBACK, str(port), *[str(f) for f in files]]  # type: ignore[union-attr]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)
