"""Find studies in the inputs: DICOM files, folders (recursive), zip archives, DICOMDIRs, NIfTI.

Only headers are read here (no pixel data decoded). Files that are not DICOM are skipped and
counted; files that claim to be DICOM but cannot be read become `FileError`s while the rest of
the input is still read. Nothing here imports torch or monai.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from screener.errors import InputError, UnreadableFileError
from screener.io import archive, nifti
from screener.io.records import FileHeader, RawHeader, file_header
from screener.io.results import Discovery, FileError
from screener.io.series import group_studies, short_hash
from screener.io.settings import IOConfig, io_config

log = logging.getLogger(__name__)

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
# SOP classes that hold no image (DICOM PS3.4): structured reports and key objects, presentation
# states, waveforms, raw data, spectroscopy, encapsulated documents, RT plans and records.
NON_IMAGE_CLASSES = ("1.2.840.10008.5.1.4.1.1.88.", "1.2.840.10008.5.1.4.1.1.11.",
                     "1.2.840.10008.5.1.4.1.1.9.", "1.2.840.10008.5.1.4.1.1.66",
                     "1.2.840.10008.5.1.4.1.1.4.2", "1.2.840.10008.5.1.4.1.1.104.",
                     "1.2.840.10008.5.1.4.1.1.481.")


def _walk(root: Path, cfg: IOConfig, errors: list[FileError] | None = None) -> Iterator[Path]:
    """Files under `root`, sorted. Symbolic links are not followed out of the tree: linked
    folders are not entered, and a linked file is read only when its target lies inside `root`
    (others become FileErrors)."""
    count = 0
    base = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            count += 1
            if count > cfg.max_files:
                raise InputError(f"{root}: more than {cfg.max_files} files, refused")
            path = Path(dirpath) / name
            if path.is_symlink():
                try:
                    target = path.resolve(strict=True)
                    inside = target.is_relative_to(base) and target.is_file()
                except (OSError, RuntimeError):
                    inside = False
                if not inside:
                    if errors is not None:
                        errors.append(FileError(str(path), f"{path}: symbolic link to a target "
                                                "outside the input folder (or dangling): not "
                                                "followed", "UnreadableFileError"))
                    continue
            yield path


def _is_dicom_suffix(path: Path, cfg: IOConfig) -> bool:
    return path.suffix.lower() in {s.lower() for s in cfg.dicom_suffixes}


def read_header(path: Path, cfg: IOConfig, order: int, seen: set[str] | None = None
                ) -> FileHeader | None:
    """Header of one file; None when it is not DICOM (no DICM marker, not a DICOM suffix).

    Raises:
        UnreadableFileError: empty, truncated or corrupt DICOM.
        ResourceLimitError: absurd declared sizes.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UnreadableFileError(f"{path}: cannot stat ({exc.strerror})") from None
    if size == 0:
        raise UnreadableFileError(f"{path}: empty file (0 bytes)")
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        if _is_dicom_suffix(path, cfg):
            raise UnreadableFileError(f"{path}: not a DICOM file (no DICM marker)") from None
        return None
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise UnreadableFileError(f"{path}: truncated or corrupt DICOM "
                                  f"({type(exc).__name__})") from None
    except Exception as exc:  # pydicom raises many types on garbage; never crash the batch
        raise UnreadableFileError(f"{path}: unreadable DICOM ({type(exc).__name__})") from None
    raw = RawHeader(ds)
    if raw.text("SOPClassUID") == DICOMDIR_CLASS or "DirectoryRecordSequence" in ds:
        return None  # a DICOMDIR found while walking: the files it lists are walked anyway
    if raw.us("Rows") is None and raw.text("SOPClassUID").startswith(NON_IMAGE_CLASSES):
        return None  # a non-image object (SR, presentation state, PDF ...): skipped, not an error
    try:
        series_uid = raw.text("SeriesInstanceUID")
        first = seen is None or series_uid not in seen
        head = file_header(ds, path, cfg, order, with_headers=first)
        if seen is not None:
            seen.add(series_uid)
    except InputError:
        raise
    except Exception as exc:
        raise UnreadableFileError(f"{path}: malformed DICOM header ({type(exc).__name__})") from None
    if "Philips" in raw.text("Manufacturer") and _philips_scale(ds):
        head.warnings.append("rescale: Philips private scale slope present; values are "
                             "RescaleSlope/Intercept display values, not Philips floating-point values")
    return head


def _philips_scale(ds: Any) -> bool:
    """True when a Philips private MR scale slope (2005,100E) is present (top level or per frame)."""
    if (0x2005, 0x100E) in ds:
        return True
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame:
        for elem in per_frame[0]:
            if elem.tag.group == 0x2005 and elem.VR == "SQ" and elem.value:
                if (0x2005, 0x100E) in elem.value[0]:
                    return True
    return False


def _dicomdir_files(path: Path) -> list[Path]:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        records = ds.DirectoryRecordSequence
    except Exception as exc:
        raise UnreadableFileError(f"{path}: unreadable DICOMDIR ({type(exc).__name__})") from None
    out = []
    root = path.parent.resolve()
    for rec in records:
        ref = rec.get("ReferencedFileID")
        if not ref:
            continue
        parts = [str(p) for p in (ref if isinstance(ref, (list, tuple)) or
                                  type(ref).__name__ == "MultiValue" else [ref])]
        target = (root.joinpath(*parts)).resolve()
        if root not in target.parents:
            raise UnreadableFileError(f"{path}: DICOMDIR references a file outside its folder")
        out.append(target)
    return out


def _expand(inputs: Sequence[str | Path], cfg: IOConfig, errors: list[FileError]) -> Iterator[Path]:
    for item in inputs:
        p = Path(item)
        if not p.exists():
            errors.append(FileError(str(p), f"{p}: no such file or folder", "InputError"))
            continue
        if p.is_dir():
            for f in _walk(p, cfg, errors):
                if archive.is_zip(f):
                    yield from _expand_zip(f, cfg, errors)
                else:
                    yield f
        elif archive.is_zip(p):
            yield from _expand_zip(p, cfg, errors)
        elif p.name.upper() == "DICOMDIR":
            try:
                yield from _dicomdir_files(p)
            except InputError as exc:
                errors.append(FileError(str(p), str(exc), type(exc).__name__))
        else:
            yield p


def _expand_zip(path: Path, cfg: IOConfig, errors: list[FileError]) -> Iterator[Path]:
    try:
        root = archive.extract_zip(path, cfg)
    except InputError as exc:
        errors.append(FileError(str(path), str(exc), type(exc).__name__))
        return
    yield from _walk(root, cfg, errors)


def find_studies(inputs: Sequence[str | Path], config: dict[str, Any] | IOConfig | None = None
                 ) -> Discovery:
    """Find every study and series in `inputs`, reading headers only.

    Args:
        inputs: DICOM files, folders (recursive), zip archives, DICOMDIR files, NIfTI files or
            folders of NIfTI files. NIfTI files in one folder (or given together) form one study.
        config: full config mapping (configs/default.yaml merged) or an IOConfig; defaults if None.

    Returns:
        Discovery with studies (series sorted by SeriesNumber), the number of skipped
        non-DICOM files, and per-file errors. Never raises for a bad file.
    """
    cfg = io_config(config)
    found = Discovery()
    headers: list[FileHeader] = []
    nifti_files: list[Path] = []
    order = 0
    seen: set[str] = set()
    try:
        for path in _expand(inputs, cfg, found.errors):
            if nifti.is_nifti(path):
                nifti_files.append(path)
                continue
            order += 1
            try:
                head = read_header(path, cfg, order, seen)
            except InputError as exc:
                found.errors.append(FileError(str(path), str(exc), type(exc).__name__))
                log.info("file %s: %s", short_hash(str(path)), type(exc).__name__)
                continue
            if head is None:
                found.skipped += 1
            else:
                headers.append(head)
    except InputError as exc:
        found.errors.append(FileError(str(inputs[0]) if inputs else "", str(exc), type(exc).__name__))
    if headers:
        from screener.select import classify_series

        for study in group_studies(headers, cfg, found.errors):
            study.source = ", ".join(str(i) for i in inputs)
            for s in study.series:
                s.sequence = classify_series(s, cfg.series_rules)
            found.studies.append(study)
    if nifti_files:
        together = {Path(i) for i in inputs if nifti.is_nifti(Path(i))}
        studies, errs = nifti.nifti_studies(nifti_files, cfg, together)
        found.studies.extend(studies)
        found.errors.extend(errs)
    log.info("found %d studies, %d skipped, %d errors", len(found.studies), found.skipped,
             len(found.errors))
    return found
