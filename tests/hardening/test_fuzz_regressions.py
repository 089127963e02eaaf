"""Inputs the fuzzer found mishandled, kept as regression tests (each fixed in its own commit)."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import numpy as np
import pytest

from screener.errors import InputError
from screener.hardening.mutate import _raw_element, _read, _write
from screener.io import find_studies, load_series


def _one_file(tmp_path: Path, n_slices: int = 1) -> Path:
    from screener.io.dicom_writer import write_mr_series

    vol = np.random.default_rng(0).normal(200, 20, (16, 12, n_slices))
    return write_mr_series(vol, np.diag([2.0, 2.0, 3.0, 1.0]), tmp_path / "src")[0]


def _ingest(folder: Path) -> list[str]:
    """Outcome names of every series (or file error) in `folder`."""
    found = find_studies([folder])
    out = [e.kind for e in found.errors]
    for st in found.studies:
        for s in st.series:
            try:
                load_series(s)
                out.append("parsed")
            except InputError as exc:
                out.append(type(exc).__name__)
    return out


@pytest.mark.parametrize("encoding", ["US", "UL"])
def test_number_of_frames_with_a_binary_vr_is_bounded(tmp_path, encoding):
    """NumberOfFrames written as US/UL: the text reading gave 1 frame (size checks passed)
    while pydicom read 65535, so 65535 frame records were built (~7 s per file)."""
    src = _one_file(tmp_path)
    ds = _read(src.read_bytes())
    raw = struct.pack("<H", 65535) if encoding == "US" else struct.pack("<I", 65535)
    _raw_element(ds, 0x00280008, encoding, raw)
    case = tmp_path / "case"
    case.mkdir()
    (case / "a.dcm").write_bytes(_write(ds))
    t0 = time.perf_counter()
    assert _ingest(case) == ["UnreadableFileError"]  # truncated: 65535 frames declared
    assert time.perf_counter() - t0 < 3.0


def test_compressed_file_declaring_more_frames_than_it_can_hold(tmp_path):
    """Encapsulated pixel data needs >= 8 bytes per frame; 90000 frames in a few kB is refused
    from the header, before frame records or a decode buffer are made."""
    from pydicom.uid import RLELossless

    src = _one_file(tmp_path)
    ds = _read(src.read_bytes())
    ds.compress(RLELossless)
    ds.NumberOfFrames = 90000
    case = tmp_path / "case"
    case.mkdir()
    ds.save_as(case / "a.dcm", enforce_file_format=True)
    t0 = time.perf_counter()
    assert _ingest(case) == ["UnreadableFileError"]
    assert time.perf_counter() - t0 < 3.0
    # The same file with its true frame count still reads.
    ds.NumberOfFrames = 1
    ds.save_as(case / "a.dcm", enforce_file_format=True)
    assert _ingest(case) == ["parsed"]


def _conformance(name: str) -> Path:
    p = Path(__file__).resolve().parents[2].parent / "shared" / "dicom-conformance" / name
    if not p.exists():
        pytest.skip(f"{p} not available")
    return p


@pytest.mark.parametrize("name", ["dcm_qa_ts/In/5.dcm", "dcm_qa_ts/In/7.dcm",
                                  "dcm_qa_ts/In/9.dcm",
                                  "dcm_qa_ts/In/8.dcm"])
def test_truncated_jpeg_family_codestream_is_refused_not_decoded(tmp_path, name):
    """Half a JPEG-LS frame decoded without error into an image with ~50% wrong pixels (a
    'parsed' series the screener would have assessed). Each frame must end in FFD9."""
    src = _conformance(name)
    ds = _read(src.read_bytes())
    case = tmp_path / "case"
    case.mkdir()
    (case / "a.dcm").write_bytes(_write(ds))
    assert _ingest(case) == ["parsed"]  # intact: reads
    from pydicom.encaps import encapsulate, generate_frames

    n = int(ds.get("NumberOfFrames", 1) or 1)
    frames = list(generate_frames(ds.PixelData, number_of_frames=n))
    frames[-1] = frames[-1][:len(frames[-1]) // 2]  # well-formed items, truncated codestream
    ds.PixelData = encapsulate(frames)
    (case / "a.dcm").write_bytes(_write(ds))
    assert _ingest(case) == ["SeriesReadError"]


@pytest.mark.parametrize("how", ["empty_pixel_data", "unknown_transfer_syntax"])
def test_store_check_refuses_instead_of_raising(tmp_path, how):
    """The C-STORE check raised TypeError (empty PixelData reads as None) or ValueError (a UID
    that is no transfer syntax); the handler turned that into 0xA700 'out of resources', which
    invites the sender to retry forever. It must refuse the dataset with a status."""
    from screener.hardening.mutate import m_transfer_syntax
    from screener.pacs.scp import RefusedDataset, check_dataset

    src = _one_file(tmp_path)
    ds = _read(src.read_bytes())
    if how == "empty_pixel_data":
        ds.PixelData = b""
        data = _write(ds)
    else:
        import numpy as np

        rng = np.random.default_rng(0)
        data = src.read_bytes()
        while True:  # the mutator with a non-transfer-syntax UID
            label, files = m_transfer_syntax(rng, [("a.dcm", data)])
            if "'1.2.3.4'" in label:
                data = files[0][1]
                break
    with pytest.raises(RefusedDataset) as info:
        check_dataset(data, "")
    assert info.value.status in (0xA900, 0xC000)


@pytest.mark.parametrize("change", [{"Columns": 10}, {"Rows": 7}, {"extra_bytes": 64}])
def test_native_pixel_data_longer_than_declared_is_refused(tmp_path, change):
    """Every file of a series claiming fewer Columns (or Rows) than its pixel data holds: the
    decoder took the first bytes and built a scrambled 'parsed' volume. Refused now; an even-
    length padding byte stays allowed."""
    from screener.io.dicom_writer import write_mr_series

    vol = np.random.default_rng(0).normal(200, 20, (16, 12, 4))
    files = write_mr_series(vol, np.diag([2.0, 2.0, 3.0, 1.0]), tmp_path / "src")
    case = tmp_path / "case"
    case.mkdir()
    for f in files:
        ds = _read(f.read_bytes())
        for key, value in change.items():
            if key == "extra_bytes":
                ds.PixelData = bytes(ds.PixelData) + b"\0" * value
            else:
                setattr(ds, key, value)
        (case / f.name).write_bytes(_write(ds))
    assert _ingest(case) == ["SeriesReadError"]


@pytest.mark.parametrize("value", ["1e-308", "1e-9"])
def test_vanishing_slice_spacing_is_refused_not_a_discovery_crash(tmp_path, value):
    """SpacingBetweenSlices=1e-308 on a single-slice file made a degenerate affine whose
    orientation code raised TypeError inside find_studies: one file killed discovery of the whole
    input. Now the series is refused (absurd_size) and the rest of the input still reads."""
    src = _one_file(tmp_path)
    ds = _read(src.read_bytes())
    _raw_element(ds, 0x00180088, "DS", value.encode() + (b" " if len(value) % 2 else b""))
    _raw_element(ds, 0x00180050, "DS", value.encode() + (b" " if len(value) % 2 else b""))
    case = tmp_path / "case"
    (case / "bad").mkdir(parents=True)
    (case / "bad" / "a.dcm").write_bytes(_write(ds))
    from screener.io.dicom_writer import write_mr_series

    write_mr_series(np.ones((8, 8, 3)), np.diag([2.0, 2.0, 3.0, 1.0]), case / "good")
    found = find_studies([case])
    assert len(found.studies) == 2
    assert sorted(_ingest(case / "bad")) == ["ResourceLimitError"]
    assert _ingest(case / "good") == ["parsed"]



def _series_with_one_bad_element(tmp_path: Path, slices: int, bad: int, tag: int,
                                 value: bytes) -> Path:
    """A written series of `slices` slices whose file number `bad` carries `value` (DS) at `tag`."""
    from screener.io.dicom_writer import write_mr_series

    files = write_mr_series(np.random.default_rng(0).normal(200, 20, (16, 12, slices)),
                            np.diag([2.0, 2.0, 3.0, 1.0]), tmp_path / "src")
    case = tmp_path / "case"
    case.mkdir()
    for k, f in enumerate(files):
        ds = _read(f.read_bytes())
        if k == bad:
            _raw_element(ds, tag, "DS", value)
        (case / f.name).write_bytes(_write(ds))
    return case


@pytest.mark.parametrize("slope", ["1e308", "1e38"])
def test_rescale_overflowing_float32_is_refused(tmp_path, slope):
    """RescaleSlope=1e308 turned every voxel into inf: a 'parsed' volume of infinities."""
    value = slope.encode() + (b" " if len(slope) % 2 else b"")
    case = _series_with_one_bad_element(tmp_path, 3, 1, 0x00281053, value)
    assert _ingest(case) == ["SeriesReadError"]


def test_nifti_with_nan_voxels_is_refused(tmp_path):
    import nibabel as nib

    data = np.ones((8, 8, 4), dtype=np.float32)
    data[2, 3, 1] = np.nan
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0])), str(tmp_path / "a.nii"))
    assert _ingest(tmp_path) == ["SeriesReadError"]


@pytest.mark.parametrize("tag,value", [(0x00281053, b"NaN "), (0x00281053, b"garbage "),
                                       (0x00281053, b"0 "), (0x00281052, b"inf ")])
def test_unusable_rescale_values_are_refused_not_defaulted(tmp_path, tag, value):
    """A RescaleSlope written as 'NaN' (or text, or 0) was read as 1.0: a corrupt header gave
    unscaled intensities that looked plausible. The file is now refused (the series reports a
    file error; a study left without it is indeterminate)."""
    case = _series_with_one_bad_element(tmp_path, 8, 4, tag, value)
    assert "UnreadableFileError" in _ingest(case)
    # The rest of the series has a hole where the refused file was: QC will not use it.
    series = find_studies([case]).studies[0].series[0]
    assert any(w.startswith("missing_slices") for w in series.warnings), series.warnings
