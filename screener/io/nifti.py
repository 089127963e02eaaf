"""NIfTI input and output.

NIfTI files in one folder (or given together on the command line) form one study, one file per
series. UIDs are derived stably from the resolved paths (`2.25.<decimal of a hash>`), so the same
files always get the same identifiers. NIfTI holds no slice thickness: unless a BIDS JSON
sidecar states it, slices are assumed contiguous (thickness = spacing along the slice axis) and
`headers["slice_thickness_source"]` says so.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from screener.atomic import atomic_write
from screener.errors import ResourceLimitError, SeriesReadError, UnreadableFileError
from screener.io.results import FileError
from screener.io.settings import IOConfig
from screener.types import SeriesInfo, SeriesVolume, Study

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(NIFTI_SUFFIXES) and not name.startswith(".")


def stem(path: Path) -> str:
    name = path.name
    for suf in (".nii.gz", ".nii"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return path.stem


def derived_uid(text: str) -> str:
    """A stable UID under the 2.25 root from a hash of `text` (paths, never identifiers)."""
    return "2.25." + str(int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:30], 16))


def _sidecar(path: Path) -> dict[str, Any]:
    side = path.with_name(stem(path) + ".json")
    if not side.is_file():
        return {}
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _series_info(path: Path, study_uid: str, cfg: IOConfig) -> SeriesInfo:
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError
    from nibabel.orientations import aff2axcodes

    try:
        if path.stat().st_size == 0:
            raise UnreadableFileError(f"{path}: empty file (0 bytes)")
        img = nib.load(str(path))
        shape = tuple(int(s) for s in img.shape)
        affine = np.asarray(img.affine, dtype=float)
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
        qcode, scode = int(img.header["qform_code"]), int(img.header["sform_code"])
        slice_dim = img.header.get_dim_info()[2]
    except UnreadableFileError:
        raise
    except (ImageFileError, OSError, ValueError, EOFError) as exc:
        raise UnreadableFileError(f"{path}: unreadable NIfTI ({type(exc).__name__})") from None
    except Exception as exc:  # nibabel raises many types on garbage (HeaderDataError, zlib.error)
        raise UnreadableFileError(f"{path}: unreadable NIfTI ({type(exc).__name__})") from None
    if len(shape) < 2:
        raise UnreadableFileError(f"{path}: NIfTI with {len(shape)} dimensions is not an image")
    zooms = (zooms + (1.0, 1.0, 1.0))[:3]  # a 2D image: one slice, as its shape is padded below
    if not all(np.isfinite(z) for z in zooms):
        # Not a size to warn about but no size at all; NaN/inf must not reach any report.
        raise UnreadableFileError(f"{path}: NIfTI voxel size {zooms} is not finite")
    warnings: list[str] = []
    loadable = True
    if len(shape) < 3:
        shape = shape + (1,) * (3 - len(shape))
    if len(shape) > 4 and any(s > 1 for s in shape[4:]):
        raise UnreadableFileError(f"{path}: {len(shape)}D NIfTI is not an MR volume series")
    shape = shape[:4] if len(shape) == 4 and shape[3] > 1 else shape[:3]
    if len(shape) == 4:
        warnings.append(f"multi_volume: {shape[3]} volumes")
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        warnings.append("no_geometry: NIfTI affine is not finite or singular")
        loadable = False
    elif qcode == 0 and scode == 0:
        warnings.append("no_geometry: NIfTI qform_code and sform_code are 0 (no world space)")
    n = int(np.prod(shape))
    if n > cfg.max_voxels_per_series or max(shape) > cfg.max_matrix * 4 or min(shape) <= 0:
        warnings.append(f"absurd_size: shape {shape} ({n} voxels)")
        loadable = False
    if any(not np.isfinite(z) or z < cfg.min_voxel_mm or z > cfg.max_voxel_mm for z in zooms):
        warnings.append(f"absurd_size: voxel size {zooms} mm")
        loadable = False
    side = _sidecar(path)
    axis = int(slice_dim) if slice_dim is not None else int(np.argmax(zooms))
    thickness = side.get("SliceThickness")
    if isinstance(thickness, (int, float)) and thickness > 0:
        src = "BIDS sidecar"
        gap: float | None = round(float(side.get("SpacingBetweenSlices", zooms[axis])) - thickness, 4)
    else:
        thickness, gap, src = zooms[axis], 0.0, "assumed contiguous (NIfTI holds no thickness)"
    headers: dict[str, Any] = {
        k: side[k] for k in ("SeriesDescription", "RepetitionTime", "EchoTime", "InversionTime",
                             "ScanningSequence", "SequenceVariant", "ImageType", "Modality",
                             "BodyPartExamined", "MagneticFieldStrength") if k in side}
    headers.update({"slice_thickness_source": src, "slice_axis": axis, "loadable": loadable,
                    "n_files": 1, "filename": path.name})
    return SeriesInfo(
        study_instance_uid=study_uid, series_instance_uid=derived_uid(str(path.resolve())),
        series_description=stem(path), modality=str(side.get("Modality", "MR")),
        source="nifti", source_files=[path], voxel_mm=zooms,  # type: ignore[arg-type]
        slice_thickness_mm=float(thickness), slice_gap_mm=gap,
        orientation="".join(aff2axcodes(affine)) if loadable else "", warnings=warnings,
        headers=headers, shape=shape, affine=affine.tolist(), frames=[(0, 0)])


def nifti_studies(files: list[Path], cfg: IOConfig,
                  together: set[Path] | None = None) -> tuple[list[Study], list[FileError]]:
    """One study per folder of NIfTI files (files in `together` form one study)."""
    from screener.select import classify_series

    groups: dict[str, list[Path]] = defaultdict(list)
    for f in files:
        key = "<given>" if together and f in together else str(f.resolve().parent)
        groups[key].append(f)
    studies, errors = [], []
    for key, paths in groups.items():
        paths = sorted(paths)
        uid = derived_uid("|".join(str(p.resolve()) for p in paths) if key == "<given>" else key)
        study = Study(study_instance_uid=uid, source=key if key != "<given>" else
                      ", ".join(str(p) for p in paths))
        for p in paths:
            try:
                info = _series_info(p, uid, cfg)
            except UnreadableFileError as exc:
                errors.append(FileError(str(p), str(exc), type(exc).__name__))
                continue
            info.sequence = classify_series(info, cfg.series_rules)
            study.series.append(info)
        if study.series:
            studies.append(study)
    return studies, errors


def load_nifti(info: SeriesInfo, cfg: IOConfig) -> SeriesVolume:
    """Voxel data (float32, slope/intercept applied) and affine of a NIfTI series."""
    import nibabel as nib

    if not info.headers.get("loadable", True):
        bad = [w for w in info.warnings if w.startswith(("absurd_size", "no_geometry"))]
        err = ResourceLimitError if any(w.startswith("absurd_size") for w in bad) else SeriesReadError
        raise err(f"NIfTI series {info.series_instance_uid}: refused ({'; '.join(bad)})")
    path = info.source_files[0]
    try:
        img = nib.load(str(path))
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except MemoryError:
        raise ResourceLimitError(f"{path}: NIfTI voxels do not fit in memory") from None
    except Exception as exc:  # noqa: BLE001 - OSError, ValueError, zlib.error, HeaderDataError ...
        raise SeriesReadError(f"{path}: cannot read NIfTI voxels ({type(exc).__name__}: "
                              f"truncated or corrupt)") from None
    if data.size != int(np.prod(info.shape)):
        raise SeriesReadError(f"{path}: NIfTI voxels {data.shape} do not match the header "
                              f"{tuple(info.shape)} (file changed since discovery?)")
    data = data.reshape(info.shape)
    return SeriesVolume(data=data, affine=np.asarray(img.affine, dtype=np.float64), info=info)


def write_nifti(volume: SeriesVolume, path: str | Path, dtype: npt.DTypeLike = np.float32) -> Path:
    """Write `volume` as NIfTI (sform = affine; qform too when it has no shear), atomically.

    `dtype` is the stored voxel type (float32 by default; uint8 for masks, which compress
    faster and smaller).

    The file is written under a temporary name in the same folder and renamed, so a reader never
    sees a half-written file. Compression follows the suffix (.nii or .nii.gz).
    """
    import nibabel as nib

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(volume.data, dtype=dtype), volume.affine)
    img.set_sform(volume.affine, code=1)
    rzs = volume.affine[:3, :3]
    zooms = np.linalg.norm(rzs, axis=0)
    ortho = np.allclose((rzs / zooms).T @ (rzs / zooms), np.eye(3), atol=1e-4)
    img.set_qform(volume.affine if ortho else None, code=1 if ortho else 0)
    img.header.set_xyzt_units("mm", "sec")
    return atomic_write(out, lambda tmp: nib.save(img, str(tmp)))  # the suffix picks compression
