"""NIfTI input/output, `screener inspect` output and exit codes, identifiers kept out of logs,
and the DICOM path staying free of torch/monai."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from screener.cli import main
from screener.errors import SeriesReadError
from screener.io import find_studies, load_series, write_nifti
from screener.io.dicom_writer import StudyIdentity, write_mr_series
from screener.types import SequenceClass


def _nii(path: Path, shape=(10, 12, 8), zooms=(1.0, 1.0, 3.0)) -> np.ndarray:
    data = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    aff = np.diag([*zooms, 1.0])
    aff[:3, 3] = (-5, 7, 2)
    nib.save(nib.Nifti1Image(data, aff), str(path))
    return data


def _inspect(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["inspect", *argv])
    return rc, buf.getvalue()


def test_nifti_folder_is_one_study_classified_by_name(tmp_path):
    _nii(tmp_path / "sub-01_FLAIR.nii.gz")
    _nii(tmp_path / "sub-01_T1w.nii.gz")
    _nii(tmp_path / "sub-01_ce-gd_T1w.nii.gz")
    _nii(tmp_path / "seg.nii.gz")
    (tmp_path / "participants.tsv").write_text("x")
    found = find_studies([tmp_path])
    assert len(found.studies) == 1 and found.errors == []
    classes = {s.series_description: s.sequence for s in found.studies[0].series}
    assert classes == {"sub-01_FLAIR": SequenceClass.FLAIR, "sub-01_T1w": SequenceClass.T1,
                       "sub-01_ce-gd_T1w": SequenceClass.T1C, "seg": SequenceClass.OTHER}
    again = find_studies([tmp_path])  # UIDs derived stably from paths
    assert again.studies[0].study_instance_uid == found.studies[0].study_instance_uid
    s = found.studies[0].series[0]
    assert s.source == "nifti" and s.shape == (10, 12, 8) and s.voxel_mm == (1.0, 1.0, 3.0)
    assert s.slice_thickness_mm == 3.0 and "assumed" in s.headers["slice_thickness_source"]


def test_nifti_files_given_together_form_one_study(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _nii(tmp_path / "a" / "t1.nii.gz")
    _nii(tmp_path / "b" / "flair.nii.gz")
    found = find_studies([tmp_path / "a" / "t1.nii.gz", tmp_path / "b" / "flair.nii.gz"])
    assert len(found.studies) == 1 and len(found.studies[0].series) == 2


def test_nifti_roundtrip_and_4d(tmp_path):
    data = _nii(tmp_path / "bold.nii.gz", shape=(6, 5, 4, 3))
    (s,) = find_studies([tmp_path / "bold.nii.gz"]).studies[0].series
    assert s.shape == (6, 5, 4, 3) and any(w.startswith("multi_volume") for w in s.warnings)
    vol = load_series(s)
    assert vol.data.dtype == np.float32 and np.array_equal(vol.data, data)
    out = write_nifti(vol, tmp_path / "out" / "copy.nii.gz")
    back = nib.load(str(out))
    assert np.array_equal(back.get_fdata(dtype=np.float32), data)
    assert np.allclose(back.affine, vol.affine)
    assert [p.name for p in out.parent.iterdir()] == ["copy.nii.gz"]  # no temp file left


def test_write_nifti_failure_leaves_nothing(tmp_path, monkeypatch):
    data = _nii(tmp_path / "x.nii.gz")
    (s,) = find_studies([tmp_path / "x.nii.gz"]).studies[0].series
    vol = load_series(s)

    def boom(img, filename):
        Path(filename).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", boom)
    with pytest.raises(OSError):
        write_nifti(vol, tmp_path / "out" / "y.nii.gz")
    assert list((tmp_path / "out").iterdir()) == []
    assert data.size


def test_bad_nifti_files(tmp_path):
    _nii(tmp_path / "good.nii.gz")
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    (tmp_path / "garbage.nii").write_bytes(b"not a nifti at all" * 50)
    raw = (tmp_path / "good.nii.gz").read_bytes()
    full = gzip.decompress(raw)
    (tmp_path / "cut.nii").write_bytes(full[: len(full) // 2])  # header fine, voxels cut
    found = find_studies([tmp_path])
    errors = {Path(e.path).name for e in found.errors}
    assert errors == {"empty.nii.gz", "garbage.nii"}
    series = {s.series_description: s for s in found.studies[0].series}
    assert set(series) == {"good", "cut"}
    with pytest.raises(SeriesReadError, match="cut.nii"):
        load_series(series["cut"])


def test_inspect_table_json_and_exit_codes(tmp_path):
    ident = StudyIdentity(patient_name="Secret^Person", patient_id="PID-777",
                          patient_birth_date="19010203", accession_number="ACC-999")
    write_mr_series(np.ones((8, 8, 4)), np.diag([1.0, 1.0, 2.0, 1.0]), tmp_path / "d",
                    identity=ident, contrast="FLAIR", slice_thickness_mm=1.5)
    rc, text = _inspect(str(tmp_path / "d"))
    assert rc == 0
    for needle in ("Study ", "SeriesInstanceUID", "FLAIR", "shape 8x8x4", "voxel 1x1x2 mm",
                   "thickness 1.5 mm", "gap 0.5 mm", "RAS affine", "4 file(s)"):
        assert needle in text, needle
    rc, text = _inspect("--json", "--nifti", str(tmp_path / "out"), str(tmp_path / "d"))
    result = json.loads(text)
    (s,) = result["studies"][0]["series"]
    assert rc == 0 and s["sequence"] == "FLAIR" and Path(s["nifti"]).is_file()
    assert s["slice_gap_mm"] == pytest.approx(0.5)
    for secret in ("Secret", "PID-777", "19010203", "ACC-999"):
        assert secret not in text
    (tmp_path / "d" / "broken.dcm").write_bytes(b"")
    rc, _ = _inspect(str(tmp_path / "d"))
    assert rc == 1
    (tmp_path / "e").mkdir()
    rc, _ = _inspect(str(tmp_path / "e"))
    assert rc == 2


def test_logs_hold_no_patient_identifiers(tmp_path, capfd):
    ident = StudyIdentity(patient_name="Secret^Person", patient_id="PID-777",
                          patient_birth_date="19010203", accession_number="ACC-999")
    files = write_mr_series(np.ones((8, 8, 4)), np.eye(4), tmp_path / "d", identity=ident)
    files[1].write_bytes(files[1].read_bytes()[:400])
    rc, out = _inspect("-vv", "--nifti", str(tmp_path / "out"), str(tmp_path / "d"))
    found = find_studies([tmp_path / "d"])
    for s in found.studies[0].series:
        with contextlib.suppress(Exception):
            load_series(s)
    logs = capfd.readouterr().err
    assert "UnreadableFileError" in logs, "expected log output to check"
    text = logs + out + " ".join(e.reason for e in found.errors)
    for secret in ("Secret", "PID-777", "19010203", "ACC-999"):
        assert secret not in text


def test_dicom_path_does_not_import_torch(tmp_path):
    write_mr_series(np.ones((8, 8, 4)), np.eye(4), tmp_path / "d")
    code = ("import sys; from screener.io import find_studies, load_series; "
            f"s = find_studies([{str(tmp_path / 'd')!r}]).studies[0].series[0]; load_series(s); "
            "bad = [m for m in ('torch', 'monai') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_fast_pixel_path_equals_pydicom(tmp_path):
    """The raw-bytes reader gives exactly pydicom's pixels wherever it applies."""
    import pydicom

    from testpaths import SHARED
    from screener.io.rawpixels import read_raw
    from screener.io.records import series_headers

    files = write_mr_series(np.random.default_rng(0).normal(100, 30, (9, 7, 3)), np.eye(4),
                            tmp_path / "d")
    files += sorted((SHARED / "dicom-conformance").rglob("*")) if SHARED.exists() else []
    checked = 0
    for f in files:
        if not f.is_file():
            continue
        try:
            ds = pydicom.dcmread(f)
            ref = ds.pixel_array
        except Exception:
            continue
        fmt = series_headers(ds)
        got = read_raw(f, fmt, int(fmt.get("NumberOfFrames", 1) or 1))
        if got is None:
            continue
        assert np.array_equal(got.reshape(ref.shape), ref), f
        checked += 1
    assert checked >= (200 if SHARED.exists() else 3)  # 258 of 267 conformance files qualify


def test_nifti_with_absurd_header_refused_before_allocating(tmp_path):
    from screener.errors import ResourceLimitError

    hdr = nib.Nifti1Header()
    hdr.set_data_shape((30000, 30000, 30000))
    hdr.set_data_dtype(np.float32)
    hdr.set_sform(np.eye(4), code=1)
    with open(tmp_path / "huge.nii", "wb") as fh:
        fh.write(hdr.binaryblock + b"\x00" * 4 + b"\x00" * 1024)
    (s,) = find_studies([tmp_path]).studies[0].series
    assert any(w.startswith("absurd_size") for w in s.warnings)
    with pytest.raises(ResourceLimitError):
        load_series(s)
