"""Resource bounds: zip archives (bombs, member paths, symlinks, member count) and pixel data
sizes checked against the configured limits before anything is decoded or allocated."""

from __future__ import annotations

import stat
import struct
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from screener.config import load_config
from screener.errors import InputError, ResourceLimitError
from screener.io import find_studies, load_series
from screener.io.archive import extract_zip
from screener.io.dicom_writer import write_mr_series
from screener.io.settings import io_config


def _series(out: Path, n: int = 3, size: tuple[int, int] = (16, 12)) -> list[Path]:
    vol = np.random.default_rng(2).normal(300, 30, (*size, n))
    return write_mr_series(vol, np.diag([2.0, 2.0, 3.0, 1.0]), out)


def _lie_about_size(path: Path, declared: int) -> None:
    """Rewrite the uncompressed size of every member in the local and central headers."""
    data = bytearray(path.read_bytes())
    i = 0
    while (i := data.find(b"PK\x03\x04", i)) >= 0:
        struct.pack_into("<I", data, i + 22, declared)
        i += 4
    i = 0
    while (i := data.find(b"PK\x01\x02", i)) >= 0:
        struct.pack_into("<I", data, i + 24, declared)
        i += 4
    path.write_bytes(bytes(data))


def _cfg(**io):
    cfg = load_config()
    cfg["io"].update(io)
    return cfg


def _new_files(root: Path, before: set[Path]) -> list[Path]:
    return [p for p in root.rglob("*") if p not in before]


def test_zip_bomb_with_lying_headers_stops_at_the_declared_size(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"  # the extractor's temp dir, this test's own (not the shared /tmp)
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dcm", b"\0" * 50_000_000)  # ~50 kB compressed
    _lie_about_size(bomb, 1000)  # headers claim 1000 bytes: passes the declared-size check
    assert bomb.stat().st_size < 200_000
    cfg = io_config(_cfg(max_zip_uncompressed_bytes=10_000_000))
    tracemalloc.start()
    t0 = time.perf_counter()
    # Inflation stops at the declared size (zipfile caps the stream, then its CRC fails; the
    # extractor's own byte count is the second line): refused as a typed error either way.
    with pytest.raises(InputError, match="corrupt zip|inflates beyond"):
        extract_zip(bomb, cfg)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - t0 < 5 and peak < 20_000_000
    assert list(scratch.iterdir()) == []  # the partial member and its folder removed


def test_zip_declared_too_large_or_too_many_members_refused_before_extracting(tmp_path):
    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dcm", b"\0" * 3_000_000)
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as zf:
        for k in range(30):
            zf.writestr(f"f{k}.dcm", b"x")
    cfg = _cfg(max_zip_uncompressed_bytes=1_000_000, max_zip_members=20)
    found = find_studies([big, many], cfg)
    assert sorted(e.kind for e in found.errors) == ["ResourceLimitError"] * 2
    assert any("30 members" in e.reason for e in found.errors)


@pytest.mark.parametrize("member", ["../../escape.dcm", "/abs/escape.dcm", "a/../../escape.dcm",
                                    "C:/escape.dcm", "..\\..\\escape.dcm", "c:\\x\\escape.dcm"])
def test_zip_member_paths_that_escape_are_refused(tmp_path, member):
    src = _series(tmp_path / "s", n=1)[0]
    evil = tmp_path / "in" / "evil.zip"
    evil.parent.mkdir()
    with zipfile.ZipFile(evil, "w") as zf:
        zf.write(src, "ok/a.dcm")
        zf.writestr(zipfile.ZipInfo(member), src.read_bytes())
    before = set(tmp_path.rglob("*"))
    found = find_studies([tmp_path / "in"])  # a zip found while walking a folder
    (err,) = found.errors
    assert "escapes the archive" in err.reason and found.studies == []
    assert _new_files(tmp_path, before) == []
    assert not list(Path("/").glob("escape.dcm")) and not list(Path("/abs").glob("*"))


def test_zip_symlink_member_refused(tmp_path):
    evil = tmp_path / "link.zip"
    info = zipfile.ZipInfo("study/IM0001.dcm")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    found = find_studies([evil])
    (err,) = found.errors
    assert "symbolic link" in err.reason and err.kind == "UnreadableFileError"


def test_declared_pixel_data_over_the_limit_refused_before_decoding(tmp_path, monkeypatch):
    """Discovery reads headers only; load re-checks each file's header before decoding."""
    import pydicom

    _series(tmp_path / "s", n=3, size=(64, 64))  # 8 kB of pixels per file
    decoded = []
    monkeypatch.setattr(pydicom.Dataset, "pixel_array",
                        property(lambda self: decoded.append(1) or np.zeros((1, 1))))
    found = find_studies([tmp_path / "s"], _cfg(max_pixel_bytes_per_file=4096))
    assert [e.kind for e in found.errors] == ["ResourceLimitError"] * 3 and not decoded
    # Found under generous limits, loaded under strict ones: refused, nothing decoded.
    (study,) = find_studies([tmp_path / "s"]).studies
    with pytest.raises(ResourceLimitError):
        load_series(study.series[0], _cfg(max_voxels_per_series=1000))
    assert not decoded


def test_absurd_compressed_header_refused_without_allocating(tmp_path):
    """An RLE file declaring 8192 x 8192 x 16 frames (2 GiB) holds a few kB: refused from the
    header, peak memory stays small."""
    from pydicom.uid import RLELossless

    import pydicom

    src = _series(tmp_path / "s", n=1)[0]
    ds = pydicom.dcmread(src)
    ds.compress(RLELossless)
    ds.Rows = ds.Columns = 8192
    ds.NumberOfFrames = 16
    case = tmp_path / "case"
    case.mkdir()
    ds.save_as(case / "a.dcm", enforce_file_format=True)
    tracemalloc.start()
    found = find_studies([case])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [e.kind for e in found.errors] == ["ResourceLimitError"] and not found.studies
    assert peak < 50_000_000
