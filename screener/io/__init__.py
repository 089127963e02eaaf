"""Study ingestion: find studies and series in DICOM/NIfTI inputs, build volumes, write NIfTI.

Public API (nothing here imports torch or monai):
    find_studies(inputs, config=None) -> Discovery   headers only, never raises for a bad file
    load_series(info, config=None) -> SeriesVolume   float32, RAS affine; raises InputError
    write_nifti(volume, path) -> Path                atomic (temp name + rename)
"""

from __future__ import annotations

from screener.io.discover import find_studies
from screener.io.load import load_series
from screener.io.nifti import write_nifti
from screener.io.results import Discovery, FileError

__all__ = ["Discovery", "FileError", "find_studies", "load_series", "write_nifti"]
