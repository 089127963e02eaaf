"""screener.atomic: the one crash-safe writer (old file or new file, never half of one)."""

from __future__ import annotations

import json

import pytest

from screener.atomic import TMP_MARK, atomic_write, temp_name, write_bytes_atomic, write_json_atomic


def test_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "report.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]


def test_atomic_write_failure_keeps_old_file_and_no_temp(tmp_path):
    target = tmp_path / "x.bin"
    write_bytes_atomic(target, b"old")

    def half_then_crash(p):
        p.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, half_then_crash)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]
    # The temporary file sits beside the target, keeps the suffix, and is renamed over it.
    seen = []
    atomic_write(target, lambda p: (seen.append(p), p.write_bytes(b"new")))
    assert seen[0].parent == tmp_path and seen[0].suffix == ".bin" and seen[0] != target
    assert target.read_bytes() == b"new" and not seen[0].exists()


def test_temporary_names_keep_the_suffix_and_carry_the_mark(tmp_path):
    tmp = temp_name(tmp_path / "anomaly_map.nii.gz")
    assert tmp.parent == tmp_path
    assert tmp.name.startswith(TMP_MARK) and tmp.name.endswith(".anomaly_map.nii.gz")


def test_strict_mode_reports_a_folder_it_cannot_sync(tmp_path, monkeypatch):
    import screener.atomic as atomic

    def no_sync(fd):
        raise OSError("EIO")

    monkeypatch.setattr(atomic.os, "fsync", no_sync)
    with pytest.raises(OSError):
        atomic.write_bytes_atomic(tmp_path / "x.dcm", b"data", strict=True)
    monkeypatch.undo()
    # Best effort (the default) tolerates a folder that cannot be synced once the file is there.
    calls = []
    real = atomic.os.fsync

    def file_ok_dir_fails(fd):
        calls.append(fd)
        if len(calls) > 1:
            raise OSError("EIO")
        return real(fd)

    monkeypatch.setattr(atomic.os, "fsync", file_ok_dir_fails)
    atomic.write_bytes_atomic(tmp_path / "y.dcm", b"data")
    assert (tmp_path / "y.dcm").read_bytes() == b"data"
