"""No patient identifiers in logs or progress output of `screen`, `batch` and `serve`.

The real commands run as subprocesses with -vv and --log-file on a study with recognisable
identifiers, stored the way PACS exports often are: under folders named after the patient and
the accession, beside an unreadable file whose name carries the patient's name and birth date
(so every "not read" message and every logged path is exercised). `serve` receives the study
from dcmtk's storescu. Stdout, stderr (tqdm progress included) and the log files must hold none
of the identifiers, while the outputs still do where they belong (report.json, the SR).
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

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.services]

NAME, PID, ACC, BIRTH = "Zzyzx^Quentin", "PID-ZZ-4711", "ACC-ZZ-0815", "19010203"
SECRETS = ("Zzyzx", "Quentin", PID, ACC, BIRTH, "1901-02-03")
LOOPBACK = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """A PACS-export-like tree: <name>_<id>/<accession>/IM*.dcm plus one unreadable file."""
    from screener.examples import COLIN27, write_example_study
    from screener.io.dicom_writer import StudyIdentity

    if not COLIN27.exists():
        pytest.skip(f"{COLIN27} missing (apt-get install mricron-data)")
    root = tmp_path_factory.mktemp("export")
    study = root / f"{NAME}_{PID}" / ACC
    ident = StudyIdentity(patient_name=NAME, patient_id=PID, accession_number=ACC,
                          patient_birth_date=BIRTH)
    write_example_study(study, lesion=True, inplane_mm=2.0, slice_thickness_mm=4.0,
                        identity=ident)
    (study / f"Zzyzx_Quentin_{BIRTH}.dcm").write_bytes(b"\0" * 300)  # unreadable, named after
    return root / f"{NAME}_{PID}"


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "screener", *args]


def _assert_clean(label: str, *texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{label}: patient identifier {secret!r} in the output:\n" \
                + "\n".join(line for line in text.splitlines() if secret in line)[:2000]


def _skip_if_model_missing(stderr: str) -> None:
    if "weights" in stderr.lower() and ("not found" in stderr.lower() or "sha256" in stderr.lower()):
        pytest.skip("model weights cannot be loaded right now: " + stderr[-300:])


def _serve(work: Path, files: list[Path]) -> tuple[str, str, str, Path]:
    port = _free_port()
    results = work / "results"
    cfg = {"serve": {"port": port, "allowed_calling_aets": ["STORESCU"],
                     "spool_dir": str(work / "spool"), "results_dir": str(results),
                     "state_file": str(work / "state.sqlite"), "quiet_period_s": 2.0,
                     "poll_interval_s": 0.2, "min_free_disk_bytes": 0,
                     "study_time_limit_s": 600.0}}
    (work / "serve.yaml").write_text(yaml.safe_dump(cfg))
    log = work / "serve.log"
    proc = subprocess.Popen(_cli("serve", "--config", str(work / "serve.yaml"), "-vv",
                                 "--log-file", str(log)), cwd=work, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while subprocess.run(["echoscu", "-aet", "STORESCU", "-aec", "SCREENER", "-to", "2",
                              LOOPBACK, str(port)], capture_output=True).returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.3)
        sent = subprocess.run(["storescu", "-aet", "STORESCU", "-aec", "SCREENER", LOOPBACK,
                               str(port), *map(str, files)], capture_output=True, text=True)
        assert sent.returncode == 0, sent.stderr[-500:]
        deadline = time.monotonic() + 600
        while not list(results.glob("*/report.json")):
            assert proc.poll() is None, "serve exited"
            assert time.monotonic() < deadline, "no report from serve"
            time.sleep(1.0)
        time.sleep(1.0)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    return out, err, log.read_text(errors="replace"), results


def test_screen_batch_and_serve_keep_identifiers_out_of_logs(export, tmp_path):
    if shutil.which("storescu") is None or shutil.which("echoscu") is None:
        pytest.skip("dcmtk (storescu, echoscu) not installed")
    files = sorted(p for p in (export / ACC).glob("IM*.dcm"))
    # screen and batch run side by side (the machine's cores are shared).
    screen = subprocess.Popen(
        _cli("screen", "-vv", "--log-file", str(tmp_path / "screen.log"), str(export),
             "-o", str(tmp_path / "screen-out")),
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    batch = subprocess.Popen(
        _cli("batch", "-vv", "--log-file", str(tmp_path / "batch.log"), str(export),
             "-o", str(tmp_path / "batch-out"), "--workers", "1"),
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    s_out, s_err = screen.communicate(timeout=900)
    b_out, b_err = batch.communicate(timeout=900)
    _skip_if_model_missing(s_err)
    assert screen.returncode == 0, s_err[-2000:]
    serve_work = tmp_path / "serve"
    serve_work.mkdir()
    v_out, v_err, v_log, results = _serve(serve_work, files)

    _assert_clean("screen", s_out, s_err, (tmp_path / "screen.log").read_text())
    _assert_clean("batch", b_out, b_err, (tmp_path / "batch.log").read_text())
    _assert_clean("serve", v_out, v_err, v_log)

    # The runs did their work: the unreadable file was reported (by hash), reports written,
    # and the identifiers are in the outputs, where they belong.
    assert "not read: path#" in s_err
    (report,) = (tmp_path / "screen-out").glob("*/report.json")
    assert json.loads(report.read_text())["study"]["accession_number"] == ACC
    assert "screening" in b_err  # the tqdm progress bar went to stderr
    (b_report,) = (tmp_path / "batch-out").glob("study-*/report.json")
    assert json.loads(b_report.read_text())["decision"] in ("negative", "flagged",
                                                            "indeterminate")
    (v_report,) = results.glob("*/report.json")
    assert json.loads(v_report.read_text())["decision"] in ("negative", "flagged",
                                                            "indeterminate")
    assert "DEBUG" in (tmp_path / "screen.log").read_text()  # -vv really logged at debug
