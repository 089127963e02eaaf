"""The CLI's log filter keeps person names and file paths out of logs (defence in depth)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from screener.hardening.logs import RedactingFilter, file_problem, path_ref, redact

NAME = "Zzyzx^Quentin"


def test_redact_names_and_paths_but_not_python_sources():
    src = str(Path(logging.__file__))
    text = redact(f"not read: /data/export/{NAME}/IM0001.dcm (as {NAME}) in {src}")
    assert NAME not in text and "Zzyzx" not in text and "/data/export" not in text
    assert path_ref(f"/data/export/{NAME}/IM0001.dcm") in text
    assert src in text  # tracebacks into the Python installation stay readable
    assert redact("series 1.2.3 refused: 4 voxels") == "series 1.2.3 refused: 4 voxels"
    url = "STOW to http://127.0.0.1:8042/dicom-web/studies failed"
    assert redact(url) == url  # URLs stay readable


def test_path_ref_is_stable_and_opaque(tmp_path):
    p = tmp_path / NAME / "x.dcm"
    assert path_ref(p) == path_ref(str(p)) and path_ref(p).startswith("path#")
    assert "Zzyzx" not in path_ref(p) and path_ref(p) != path_ref(tmp_path / "y.dcm")
    line = file_problem(p, f"{p}: truncated or corrupt DICOM (EOFError)")
    assert line == f"{path_ref(p)}: truncated or corrupt DICOM (EOFError)"


def test_filter_rewrites_messages_args_and_tracebacks(tmp_path):
    stream = __import__("io").StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("screener.test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("cannot read %s", f"/srv/pacs/{NAME}/a.dcm")
        try:
            open(f"/srv/pacs/PID-ZZ-4711_{NAME}/missing.dcm")
        except OSError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "Zzyzx" not in out and "PID-ZZ-4711" not in out and "/srv/pacs" not in out
    assert "FileNotFoundError" in out and "path#" in out


def test_cli_installs_the_filter_on_every_handler(tmp_path):
    from screener.cli import setup_logging

    old = logging.getLogger().handlers[:]
    try:
        setup_logging(2, str(tmp_path / "log.txt"))
        handlers = logging.getLogger().handlers
        assert len(handlers) == 2
        assert all(any(isinstance(f, RedactingFilter) for f in h.filters) for h in handlers)
        logging.getLogger("x").warning("file %s", f"/home/{NAME}/b.dcm")
        for h in handlers:
            h.flush()
        assert "Zzyzx" not in (tmp_path / "log.txt").read_text()
    finally:
        root = logging.getLogger()
        for h in root.handlers[:]:
            root.removeHandler(h)
            h.close()
        for h in old:
            root.addHandler(h)
    assert sys.stderr is not None
