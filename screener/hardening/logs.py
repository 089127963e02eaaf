"""Keep patient identifiers out of logs: path references and a defence-in-depth log filter.

Screener code never logs header identifiers (PatientName, PatientID, PatientBirthDate,
AccessionNumber). File paths are the remaining leak: PACS exports often name folders and files
after the patient (`DOE^JANE/IM0001`, `Smith_John_1950.dcm`). Code that reports a path on the
console or in a log uses `path_ref`, a short hash. `RedactingFilter`, installed on every handler
by the CLI, is the second line: it rewrites any DICOM person name (`A^B`) and any absolute path
outside the Python installation into a hash before the record is written.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from pathlib import Path

# A DICOM person name: components separated by carets (Family^Given^Middle^Prefix^Suffix).
_PERSON_NAME = re.compile(r"[^\s'\"/\\<>]*\^[^\s'\"/\\<>]*")
# An absolute POSIX path (stops at whitespace, quotes and common separators); not the path part
# of a URL ("http://host:port/path" stays readable).
_ABS_PATH = re.compile(r"(?<![\w.~:/-])/[^\s'\"<>:;,()\[\]{}|]+")


def path_ref(path: str | Path) -> str:
    """A loggable stand-in for a file path: `path#<8 hex>` (a hash of the absolute path).

    The same path always gives the same reference, so an operator can match log lines to the
    per-file records written into the output folder, without names appearing in the log.
    """
    text = str(Path(path).absolute()) if str(path) else ""
    return "path#" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:8]


def _allowed_prefixes() -> tuple[str, ...]:
    """Paths that can be logged as they are: the Python installation and screener's code."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix,
             str(Path(__file__).resolve().parents[2])}
    return tuple(sorted((r.rstrip("/") + "/" for r in roots if r and r != "/"), key=len,
                        reverse=True))


def redact(text: str, allowed: tuple[str, ...] | None = None) -> str:
    """`text` with person names replaced by `<name>` and absolute paths by `path_ref`s.

    Args:
        text: a log message or formatted traceback.
        allowed: path prefixes kept verbatim (default: the Python installation and the
            screener source tree, so tracebacks stay readable).
    """
    keep = _allowed_prefixes() if allowed is None else allowed

    def _path(m: re.Match[str]) -> str:
        p = m.group(0)
        if p.startswith(keep):
            return p
        return path_ref(p)

    text = _ABS_PATH.sub(_path, text)
    return _PERSON_NAME.sub("<name>", text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and traceback text) through `redact`.

    Installed on handlers (not loggers) so that records from every library pass through it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._allowed = _allowed_prefixes()
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logged as its template only
            message = str(record.msg)
        record.msg, record.args = redact(message, self._allowed), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._allowed)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self._allowed)
        return True


def install(handlers: list[logging.Handler]) -> None:
    """Attach one RedactingFilter to each handler (idempotent)."""
    for h in handlers:
        if not any(isinstance(f, RedactingFilter) for f in h.filters):
            h.addFilter(RedactingFilter())


def file_problem(path: str | Path, reason: str) -> str:
    """A console/log line for a file that could not be read: its `path_ref` and the reason,
    with the path itself (and any name or path inside the reason) left out."""
    text = str(reason)
    p = str(path)
    if p:
        text = text.replace(p, "").lstrip(": ")
    return f"{path_ref(path)}: {redact(text)}" if p else redact(text)
