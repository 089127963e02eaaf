"""Safe extraction of zip archives given as input.

Checked before anything is written: member count, total declared size, absolute paths, `..`
components, symlinks, and per-member byte counts while extracting (a member that inflates beyond
its declared size is cut off and refused). Each archive is extracted into a private temporary
folder, removed when the process exits. Zips inside zips are not opened.
"""

from __future__ import annotations

import atexit
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from screener.errors import ResourceLimitError, UnreadableFileError
from screener.io.settings import IOConfig

_TEMP_DIRS: list[Path] = []
_CHUNK = 1 << 20


def _cleanup() -> None:
    for d in _TEMP_DIRS:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)


def extracted_dirs() -> list[str]:
    """The folders this process extracted archives into (removed when it exits)."""
    return [str(d) for d in _TEMP_DIRS]


def remove_at_exit(dirs: list[str]) -> None:
    """Remove these folders (extracted by a helper process) when this process exits."""
    for d in map(Path, dirs):
        if d not in _TEMP_DIRS:
            _TEMP_DIRS.append(d)


def is_zip(path: Path) -> bool:
    """True for a file that starts like a zip archive (by content, not by name)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PK\x03\x04" and zipfile.is_zipfile(path)
    except OSError:
        return False


def _safe_member(name: str) -> PurePosixPath | None:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        return None
    return p


def extract_zip(path: Path, cfg: IOConfig) -> Path:
    """Extract `path` into a new temporary folder after safety checks; return that folder.

    Raises:
        UnreadableFileError: not a readable zip, or a member path escapes the folder.
        ResourceLimitError: too many members or too many uncompressed bytes.
    """
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnreadableFileError(f"{path}: unreadable zip archive ({exc})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > cfg.max_zip_members:
            raise ResourceLimitError(f"{path}: zip holds {len(infos)} members, limit "
                                     f"{cfg.max_zip_members}: refused")
        total = sum(i.file_size for i in infos)
        if total > cfg.max_zip_uncompressed_bytes:
            raise ResourceLimitError(f"{path}: zip declares {total} uncompressed bytes, limit "
                                     f"{cfg.max_zip_uncompressed_bytes}: refused")
        for info in infos:
            mode = info.external_attr >> 16
            if _safe_member(info.filename) is None:
                raise UnreadableFileError(f"{path}: zip member path escapes the archive "
                                          f"({info.filename!r}): refused")
            if stat.S_ISLNK(mode):
                raise UnreadableFileError(f"{path}: zip member is a symbolic link "
                                          f"({info.filename!r}): refused")
        out = Path(tempfile.mkdtemp(prefix="screener-zip-"))
        _TEMP_DIRS.append(out)
        written = 0
        try:
            for info in infos:
                rel = _safe_member(info.filename)
                assert rel is not None
                target = out.joinpath(*rel.parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    member = 0
                    while chunk := src.read(_CHUNK):
                        member += len(chunk)
                        written += len(chunk)
                        if member > info.file_size or written > cfg.max_zip_uncompressed_bytes:
                            raise ResourceLimitError(f"{path}: zip member {info.filename!r} "
                                                     "inflates beyond its declared size: refused")
                        dst.write(chunk)
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
            shutil.rmtree(out, ignore_errors=True)
            raise UnreadableFileError(f"{path}: corrupt zip archive ({type(exc).__name__}: "
                                      f"{exc})") from None
        except ResourceLimitError:
            shutil.rmtree(out, ignore_errors=True)
            raise
    return out
