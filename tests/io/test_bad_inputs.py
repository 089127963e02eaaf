"""Each bad-input case ends in its expected outcome: a typed error or a warning, never a wrong
volume, and the rest of the input is still read."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest

from screener.config import load_config
from screener.errors import ResourceLimitError, SeriesReadError
from screener.io import find_studies, load_series
from screener.io.dicom_writer import StudyIdentity, write_mr_series

SHAPE = (16, 12, 8)


def _series(folder: Path, **kw) -> list[Path]:
    aff = np.diag([-0.9, -0.9, 2.0, 1.0])
    aff[:3, 3] = (10.0, 20.0, -5.0)
    data = np.arange(np.prod(SHAPE), dtype=float).reshape(SHAPE)
    return write_mr_series(data, aff, folder, identity=StudyIdentity(), **kw)


def _edit(path: Path, **elements) -> None:
    ds = pydicom.dcmread(path)
    for k, v in elements.items():
        setattr(ds, k, v)
    ds.save_as(path)


def _codes(series) -> set[str]:
    return {w.split(":", 1)[0] for w in series.warnings}


def _one_series(folder: Path):
    found = find_studies([folder])
    assert len(found.studies) == 1 and len(found.studies[0].series) == 1, found
    return found, found.studies[0].series[0]


def test_clean_series_has_no_warnings(tmp_path):
    _series(tmp_path)
    found, s = _one_series(tmp_path)
    assert s.warnings == [] and found.errors == [] and found.skipped == 0
    assert load_series(s).data.shape == SHAPE


def test_zero_byte_truncated_garbage_files_error_rest_read(tmp_path):
    files = _series(tmp_path / "s")
    (tmp_path / "s" / "empty.dcm").write_bytes(b"")
    (tmp_path / "s" / "garbage.dcm").write_bytes(np.random.default_rng(0).bytes(5000))
    half = tmp_path / "s" / "half.dcm"
    raw = files[0].read_bytes()
    ds = pydicom.dcmread(files[0])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(half)
    half.write_bytes(half.read_bytes()[: len(raw) // 2])  # pixel data cut
    head = tmp_path / "s" / "head.dcm"
    head.write_bytes(raw[:300])  # cut inside the header
    found = find_studies([tmp_path / "s"])
    reasons = {Path(e.path).name: e.reason for e in found.errors}
    assert set(reasons) == {"empty.dcm", "garbage.dcm", "half.dcm", "head.dcm"}
    assert "empty" in reasons["empty.dcm"]
    assert "not a DICOM" in reasons["garbage.dcm"]
    assert "truncated" in reasons["half.dcm"]
    assert "truncated" in reasons["head.dcm"] or "corrupt" in reasons["head.dcm"]
    (s,) = found.studies[0].series
    assert len(s.source_files) == SHAPE[2] and s.warnings == []


def test_non_dicom_files_skipped_and_counted(tmp_path):
    _series(tmp_path)
    (tmp_path / "README.txt").write_text("notes")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "thumbs.db").write_bytes(b"\x00\x01garbage")
    found, s = _one_series(tmp_path)
    assert found.skipped == 2 and found.errors == []


def test_absurd_declared_size_refused_before_allocating(tmp_path):
    _series(tmp_path / "ok")
    bad = tmp_path / "ok" / "huge.dcm"
    ds = pydicom.dcmread(sorted((tmp_path / "ok").glob("*.dcm"))[0])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.Rows, ds.Columns, ds.NumberOfFrames = 65535, 65535, 10000
    ds.PixelData = b"\x00" * 64
    ds.save_as(bad)
    import tracemalloc

    tracemalloc.start()
    found = find_studies([tmp_path / "ok"])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200e6
    (err,) = found.errors
    assert err.kind == "ResourceLimitError" and "Rows=65535" in err.reason
    assert len(found.studies[0].series) == 1


def test_series_over_voxel_limit_refused(tmp_path):
    _series(tmp_path)
    cfg = load_config()
    cfg["io"]["max_voxels_per_series"] = 1000
    found = find_studies([tmp_path], cfg)
    (s,) = found.studies[0].series
    assert "absurd_size" in _codes(s)
    with pytest.raises(ResourceLimitError):
        load_series(s, cfg)


def test_missing_slice_detected_and_refused(tmp_path):
    files = _series(tmp_path)
    files[3].unlink()
    _, s = _one_series(tmp_path)
    assert "missing_slices" in _codes(s)
    with pytest.raises(SeriesReadError, match="missing_slices"):
        load_series(s)


def test_uneven_spacing_detected_and_refused(tmp_path):
    files = _series(tmp_path)
    ds = pydicom.dcmread(files[4])
    ipp = [float(v) for v in ds.ImagePositionPatient]
    _edit(files[4], ImagePositionPatient=[ipp[0], ipp[1], ipp[2] + 0.6])
    _, s = _one_series(tmp_path)
    assert "uneven_spacing" in _codes(s)
    with pytest.raises(SeriesReadError, match="uneven_spacing"):
        load_series(s)


def test_duplicate_position_detected_and_refused(tmp_path):
    files = _series(tmp_path)
    dup = tmp_path / "dup.dcm"
    shutil.copy(files[2], dup)
    _edit(dup, SOPInstanceUID=pydicom.uid.generate_uid())
    _, s = _one_series(tmp_path)
    assert "duplicate_positions" in _codes(s)
    with pytest.raises(SeriesReadError, match="duplicate_positions"):
        load_series(s)


def test_exact_copy_of_a_file_is_reported_and_read_once(tmp_path):
    files = _series(tmp_path)
    shutil.copy(files[2], tmp_path / "copy.dcm")
    _, s = _one_series(tmp_path)
    assert any("repeated copies" in w for w in s.warnings)
    assert load_series(s).data.shape == SHAPE


def test_inconsistent_orientation_detected_and_refused(tmp_path):
    files = _series(tmp_path)
    ds = pydicom.dcmread(files[5])
    iop = [float(v) for v in ds.ImageOrientationPatient]
    iop[1] += 0.01
    _edit(files[5], ImageOrientationPatient=iop)
    _, s = _one_series(tmp_path)
    assert "inconsistent_orientation" in _codes(s)
    with pytest.raises(SeriesReadError, match="inconsistent_orientation"):
        load_series(s)


def test_gantry_tilt_reported_and_geometry_exact(tmp_path):
    files = _series(tmp_path)
    shift = 0.35  # mm per slice along the column direction (LPS y): about 10 degrees
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ipp = [float(v) for v in ds.ImagePositionPatient]
        _edit(f, ImagePositionPatient=[ipp[0], ipp[1] + k * shift, ipp[2]])
    _, s = _one_series(tmp_path)
    assert "gantry_tilt" in _codes(s)
    vol = load_series(s)
    # every slice's first voxel sits exactly at that file's ImagePositionPatient (RAS)
    for k, f in enumerate(s.source_files):
        ipp = np.array([float(v) for v in pydicom.dcmread(f).ImagePositionPatient])
        world = vol.affine @ np.array([0, 0, k, 1.0])
        assert np.allclose(world[:3], ipp * [-1, -1, 1], atol=1e-3)


def test_no_geometry_refused(tmp_path):
    files = _series(tmp_path)
    for f in files:
        ds = pydicom.dcmread(f)
        del ds.ImagePositionPatient
        ds.save_as(f)
    _, s = _one_series(tmp_path)
    assert "no_geometry" in _codes(s)
    with pytest.raises(SeriesReadError, match="no_geometry"):
        load_series(s)


def test_one_series_uid_with_two_echoes_is_split(tmp_path):
    uid = pydicom.uid.generate_uid()
    ident = StudyIdentity()
    aff = np.diag([-1.0, -1.0, 3.0, 1.0])
    data = np.ones(SHAPE)
    write_mr_series(data, aff, tmp_path / "e1", identity=ident, series_instance_uid=uid,
                    contrast="T2", extra={"EchoNumbers": 1, "EchoTime": 15.0}, file_prefix="A")
    write_mr_series(data * 2, aff, tmp_path / "e2", identity=ident, series_instance_uid=uid,
                    contrast="T2", extra={"EchoNumbers": 2, "EchoTime": 95.0}, file_prefix="B")
    found = find_studies([tmp_path])
    series = found.studies[0].series
    assert len(series) == 2
    assert all("mixed_series" in _codes(s) for s in series)
    assert {s.split_key for s in series} == {"EchoNumbers=1,EchoTime=15", "EchoNumbers=2,EchoTime=95"}
    means = sorted(float(load_series(s).data.mean()) for s in series)
    assert means == pytest.approx([1.0, 2.0], abs=1e-3)


def test_three_plane_localizer_is_split_by_orientation(tmp_path):
    uid = pydicom.uid.generate_uid()
    ident = StudyIdentity()
    planes = [np.diag([-1.0, -1.0, 5.0, 1.0]),
              np.array([[0, 0, 5.0, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]]),
              np.array([[-1, 0, 0, 0], [0, 0, 5.0, 0], [0, -1, 0, 0], [0, 0, 0, 1]])]
    for n, aff in enumerate(planes):
        write_mr_series(np.ones((16, 16, 3)), aff, tmp_path / f"p{n}", identity=ident,
                        series_instance_uid=uid, contrast="localizer", file_prefix=f"P{n}")
    series = find_studies([tmp_path]).studies[0].series
    assert len(series) == 3
    assert sorted(s.orientation for s in series) == sorted(["LPS", "PIL", "LIP"]) or len(
        {s.orientation for s in series}) == 3
    assert all(s.sequence.value == "localizer" for s in series)
    assert all(load_series(s).data.shape == (16, 16, 3) for s in series)


def test_mosaic_without_csa_header_refused(tmp_path):
    from testpaths import shared_path

    src = shared_path("dicom-conformance", "dcm_qa_ts", "In", "1.dcm")
    ds = pydicom.dcmread(src)
    for tag in [t for t in ds.keys() if t.group == 0x0029]:
        del ds[tag]
    ds.save_as(tmp_path / "mosaic.dcm")
    found = find_studies([tmp_path])
    (err,) = found.errors
    assert "mosaic" in err.reason and "refused" in err.reason
    assert found.studies == []


def test_zip_input_read(tmp_path):
    files = _series(tmp_path / "s")
    with zipfile.ZipFile(tmp_path / "study.zip", "w") as zf:
        for f in files:
            zf.write(f, f"study/{f.name}")
        zf.writestr("study/notes.txt", "x")
    found = find_studies([tmp_path / "study.zip"])
    (s,) = found.studies[0].series
    assert found.skipped == 1 and found.errors == []
    assert load_series(s).data.shape == SHAPE


def test_zip_member_escaping_refused(tmp_path):
    files = _series(tmp_path / "s")
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.write(files[0], "../../evil.dcm")
    found = find_studies([tmp_path / "evil.zip"])
    (err,) = found.errors
    assert "escapes" in err.reason and found.studies == []
    assert not (tmp_path.parent / "evil.dcm").exists()


def test_zip_too_large_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dcm", b"\x00" * 2_000_000)
    cfg = load_config()
    cfg["io"]["max_zip_uncompressed_bytes"] = 1_000_000
    found = find_studies([tmp_path / "bomb.zip"], cfg)
    (err,) = found.errors
    assert err.kind == "ResourceLimitError" and "refused" in err.reason


def test_dicomdir_input(tmp_path):
    from pydicom.fileset import FileSet

    files = _series(tmp_path / "src")
    fs = FileSet()
    for f in files:
        fs.add(pydicom.dcmread(f))
    fs.write(tmp_path / "media")
    found = find_studies([tmp_path / "media" / "DICOMDIR"])
    (s,) = found.studies[0].series
    assert len(s.source_files) == SHAPE[2] and found.errors == []
    assert load_series(s).data.shape == SHAPE


def test_missing_input_path_is_an_error(tmp_path):
    found = find_studies([tmp_path / "nope"])
    assert found.studies == [] and "no such file" in found.errors[0].reason


def test_pixel_data_corrupted_after_discovery(tmp_path):
    files = _series(tmp_path)
    _, s = _one_series(tmp_path)
    files[1].write_bytes(files[1].read_bytes()[:-100])
    with pytest.raises((SeriesReadError,)):
        load_series(s)


def test_non_image_dicom_is_skipped_not_an_error(tmp_path):
    files = _series(tmp_path)
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    for kw in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
               "SamplesPerPixel", "PhotometricInterpretation"):
        delattr(ds, kw)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.Modality = "SR"
    ds.save_as(tmp_path / "report.dcm")
    found, s = _one_series(tmp_path)
    assert found.skipped == 1 and found.errors == [] and len(s.source_files) == SHAPE[2]


def test_two_acquisitions_covering_different_slabs_are_split(tmp_path):
    uid = pydicom.uid.generate_uid()
    ident = StudyIdentity()
    for n, z0 in enumerate((0.0, 7.0)):  # overlapping slabs, positions do not form one grid
        aff = np.diag([-1.0, -1.0, 2.0, 1.0])
        aff[2, 3] = z0
        write_mr_series(np.full(SHAPE, n + 1.0), aff, tmp_path / f"a{n}", identity=ident,
                        series_instance_uid=uid, extra={"AcquisitionNumber": n + 1},
                        file_prefix=f"A{n}")
    series = find_studies([tmp_path]).studies[0].series
    assert sorted(s.split_key for s in series) == ["AcquisitionNumber=1", "AcquisitionNumber=2"]
    assert all("mixed_series" in _codes(s) for s in series)
    for s in series:
        vol = load_series(s)
        assert vol.data.shape == SHAPE and np.unique(vol.data).size == 1


def test_repeated_acquisitions_of_the_same_slab_form_4d(tmp_path):
    uid = pydicom.uid.generate_uid()
    ident = StudyIdentity()
    aff = np.diag([-1.0, -1.0, 2.0, 1.0])
    for n in range(3):
        write_mr_series(np.full(SHAPE, n + 1.0), aff, tmp_path / f"a{n}", identity=ident,
                        series_instance_uid=uid, extra={"AcquisitionNumber": n + 1},
                        file_prefix=f"A{n}")
    (s,) = find_studies([tmp_path]).studies[0].series
    assert s.shape == SHAPE + (3,) and "multi_volume" in _codes(s)
    vol = load_series(s)
    assert [float(vol.data[..., t].mean()) for t in range(3)] == pytest.approx([1.0, 2.0, 3.0])


def test_a_series_that_cannot_be_assembled_costs_only_itself(tmp_path, monkeypatch):
    """An unforeseen failure while placing one series' slices used to raise out of find_studies
    and lose every study of the input; now that series is an error record and the rest stays."""
    import numpy as np

    import screener.io.series as series_mod
    from screener.io import find_studies
    from screener.io.dicom_writer import StudyIdentity, write_mr_series

    for name in ("good", "bad"):
        write_mr_series(np.ones((8, 8, 4)), np.diag([2.0, 2.0, 3.0, 1.0]), tmp_path / name,
                        identity=StudyIdentity(patient_name=f"Zzyzx^{name}"))
    bad_file = sorted((tmp_path / "bad").iterdir())[0]
    real = series_mod.build_grid

    def fragile(frames, cfg):
        if any(f.path.parent.name == "bad" for f in frames):
            raise ZeroDivisionError("unforeseen geometry")
        return real(frames, cfg)

    monkeypatch.setattr(series_mod, "build_grid", fragile)
    found = find_studies([tmp_path])
    assert len(found.studies) == 1
    assert [f.parent.name for f in found.studies[0].series[0].source_files] == ["good"] * 4
    assert [(e.kind, "ZeroDivisionError" in e.reason) for e in found.errors] == [("SeriesReadError", True)]
    assert Path(found.errors[0].path).parent == bad_file.parent
