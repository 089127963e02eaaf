"""NIfTI inputs the fuzzer found mishandled (header fields, corrupt gzip), kept as tests."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from screener.errors import InputError
from screener.io import find_studies, load_series


def _nifti(tmp_path: Path, gz: bool = False) -> Path:
    import nibabel as nib

    img = nib.Nifti1Image(np.random.default_rng(0).normal(100, 10, (12, 10, 8)).astype(np.float32),
                          np.diag([2.0, 2.0, 3.0, 1.0]))
    path = tmp_path / ("a.nii.gz" if gz else "a.nii")
    nib.save(img, str(path))
    return path


@pytest.mark.parametrize("field,offset,fmt,value", [
    ("datatype", 70, "<h", 1536),          # nibabel HeaderDataError escaped discovery
    ("pixdim3", 88, "<f", float("inf")),   # inf slice thickness reached the report (ReportError)
    ("dim0", 40, "<h", 0),                 # no dimensions: voxel_mm of one number (ReportError)
])
def test_hostile_nifti_header_is_a_typed_error(tmp_path, field, offset, fmt, value):
    path = _nifti(tmp_path)
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    path.write_bytes(bytes(data))
    found = find_studies([path.parent])
    assert [e.kind for e in found.errors] == ["UnreadableFileError"] and not found.studies


def test_corrupt_gzip_nifti_is_a_typed_error(tmp_path):
    """A corrupt deflate stream raised zlib.error (not an OSError) out of find_studies."""
    import gzip

    path = _nifti(tmp_path, gz=True)
    raw = gzip.decompress(path.read_bytes())
    comp = bytearray(gzip.compress(raw, mtime=0))
    for k in range(40, 60):
        comp[k] ^= 0x5A
    path.write_bytes(bytes(comp))
    found = find_studies([path])
    assert all(e.kind in ("UnreadableFileError",) for e in found.errors)
    for st in found.studies:  # header may still parse; then the voxels are a typed error
        for s in st.series:
            with pytest.raises(InputError):
                load_series(s)
    assert found.errors or found.studies
