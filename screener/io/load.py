"""Decode the pixels of one series into a float32 volume with its RAS affine.

Geometry comes from the SeriesInfo built by `find_studies` (headers only); here each file is read
once, its frames (or mosaic tiles) decoded and placed at their slice/volume index, and
RescaleSlope/RescaleIntercept applied per image. Series whose warnings make a regular volume
impossible (missing slices, uneven spacing, duplicate positions, inconsistent orientation, no
geometry, absurd size) are refused with a typed error rather than built wrong.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import numpy as np

from screener.errors import InputError, ResourceLimitError, SeriesReadError, UnreadableFileError
from screener.io.rawpixels import pixel_dtype, read_raw
from screener.io.records import UNCOMPRESSED_SYNTAXES, declared_frames, file_header
from screener.io.series import short_hash
from screener.io.settings import IOConfig, io_config
from screener.types import SeriesInfo, SeriesVolume

log = logging.getLogger(__name__)

JPEG_FAMILY = "1.2.840.10008.1.2.4."  # JPEG, JPEG-LS, JPEG 2000, HTJ2K (and video, excluded)
REFUSING = ("missing_slices", "uneven_spacing", "duplicate_positions", "inconsistent_orientation",
            "no_geometry", "absurd_size")


def _refuse_if_irregular(info: SeriesInfo, cfg: IOConfig) -> None:
    n = int(np.prod(info.shape)) if info.shape else 0
    if n > cfg.max_voxels_per_series:
        raise ResourceLimitError(f"series {info.series_instance_uid}: {n} voxels exceed the limit "
                                 f"{cfg.max_voxels_per_series}: refused before allocating")
    if info.headers.get("loadable", True) and info.affine is not None:
        return
    bad = [w for w in info.warnings if w.split(":", 1)[0] in REFUSING] or ["no usable geometry"]
    if any(w.startswith("absurd_size") for w in bad):
        raise ResourceLimitError(f"series {info.series_instance_uid}: refused ({'; '.join(bad)})")
    raise SeriesReadError(f"series {info.series_instance_uid}: cannot build a regular volume "
                          f"({'; '.join(bad)})")


def _tiles(pixels: np.ndarray, n: int, rows: int, cols: int) -> np.ndarray:
    """Split a mosaic image into its `n` tiles, shape (n, rows, cols)."""
    per_row = pixels.shape[1] // cols
    out = np.empty((n, rows, cols), dtype=pixels.dtype)
    for k in range(n):
        r, c = divmod(k, per_row)
        out[k] = pixels[r * rows:(r + 1) * rows, c * cols:(c + 1) * cols]
    return out


def _check_codestreams(ds: Any, path: Any) -> None:
    """Refuse JPEG-family frames that do not end in their end-of-image marker (FFD9).

    JPEG, JPEG-LS and JPEG 2000 decoders return an image from a truncated codestream without
    an error (half a JPEG-LS frame decoded to an image with half its pixels wrong), so the
    completeness of each frame is checked before decoding. RLE decoding checks its own lengths.
    """
    from pydicom.encaps import generate_frames

    ts = str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "") or "")
    if not ts.startswith(JPEG_FAMILY) or "PixelData" not in ds:
        return
    if ts.rsplit(".", 1)[-1].isdigit() and 100 <= int(ts.rsplit(".", 1)[-1]) <= 108:
        return  # MPEG/HEVC video streams: no per-frame end marker
    n = declared_frames(ds)
    try:
        frames = list(generate_frames(ds.PixelData, number_of_frames=n))
    except Exception as exc:  # noqa: BLE001 - malformed encapsulation
        raise SeriesReadError(f"{path}: encapsulated pixel data malformed "
                              f"({type(exc).__name__})") from None
    if len(frames) != n:
        raise SeriesReadError(f"{path}: {len(frames)} compressed frames for {n} declared")
    for k, frame in enumerate(frames):
        if frame.rstrip(b"\x00")[-2:] != b"\xff\xd9":
            raise SeriesReadError(f"{path}: compressed frame {k + 1} of {n} is truncated "
                                  "(no end-of-image marker): refused")


def _check_native_length(ds: Any, path: Any) -> None:
    """Refuse uncompressed pixel data longer than the header declares (beyond the even-length
    padding byte). Decoders take the first bytes and ignore the rest, so a wrong Rows, Columns
    or NumberOfFrames would silently give a scrambled image instead of an error."""
    ts = str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "") or "")
    if ts not in UNCOMPRESSED_SYNTAXES or "PixelData" not in ds:
        return
    try:
        bits = int(ds.Rows) * int(ds.Columns) * declared_frames(ds) \
            * int(ds.get("SamplesPerPixel", 1) or 1) * int(ds.BitsAllocated)
        held = len(ds.PixelData or b"")
    except Exception:  # noqa: BLE001 - incomplete pixel module: the decoder reports it
        return
    declared = (bits + 7) // 8
    if held > declared + (declared % 2):
        raise SeriesReadError(f"{path}: pixel data holds {held} bytes but the header declares "
                              f"{declared} (Rows, Columns or NumberOfFrames wrong): refused")


def _decode(path: Any, cfg: IOConfig, expect_sop: str) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """All 2D images of one file, shape (n, rows, cols), with (slope, intercept) per image."""
    import pydicom

    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise UnreadableFileError(f"{path}: unreadable DICOM ({type(exc).__name__})") from None
    if str(ds.get("SOPInstanceUID", "")) != expect_sop:
        raise SeriesReadError(f"{path}: file changed since discovery (SOPInstanceUID differs)")
    head = file_header(ds, path, cfg)
    if (int(ds.get("SamplesPerPixel", 1) or 1)) != 1:
        raise SeriesReadError(f"{path}: colour images (SamplesPerPixel > 1) are not MR volumes")
    _check_codestreams(ds, path)
    _check_native_length(ds, path)
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        raise SeriesReadError(f"{path}: pixel data cannot be decoded "
                              f"({type(exc).__name__}: truncated, corrupt or unsupported "
                              f"transfer syntax {ds.file_meta.get('TransferSyntaxUID', '?')})") from None
    recs = head.records
    if recs and recs[0].mosaic:
        pixels = _tiles(pixels, recs[0].mosaic, recs[0].rows, recs[0].columns)
    elif pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.shape[0] != len(recs) or pixels.shape[1:] != (recs[0].rows, recs[0].columns):
        raise SeriesReadError(f"{path}: decoded pixels {pixels.shape} do not match the header "
                              f"({len(recs)} x {recs[0].rows} x {recs[0].columns})")
    return pixels, [(r.slope, r.intercept) for r in recs]


def load_dicom(info: SeriesInfo, cfg: IOConfig) -> SeriesVolume:
    """Build the volume of a DICOM series found by `find_studies`."""
    _refuse_if_irregular(info, cfg)
    shape = tuple(info.shape)
    n_slices = shape[2]
    # Fortran order: each slice (i, j) is one contiguous block, the transpose of the stored
    # (rows, columns) image, so slices are copied without strided writes (and NIfTI is F-order).
    data = np.empty(shape, dtype=np.float32, order="F")
    wanted: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for pos, (fi, frame) in enumerate(info.frames):
        wanted[fi].append((pos, frame))
    if len(info.frames) != int(np.prod(shape[2:])):
        raise SeriesReadError(f"series {info.series_instance_uid}: {len(info.frames)} images for "
                              f"shape {shape}")

    fmt = info.headers
    mosaic = int(info.headers.get("mosaic_tiles", 0) or 0)
    fast = len(info.rescale) == len(info.frames) and pixel_dtype(fmt) is not None

    def read_one(fi: int) -> None:
        path = info.source_files[fi]
        pixels = None
        if fast:
            raw = read_raw(path, fmt, int(fmt.get("NumberOfFrames", 1) or 1))
            if raw is not None and mosaic:
                raw = _tiles(raw[0], mosaic, shape[1], shape[0])
            if raw is not None and raw.shape[1:] == (shape[1], shape[0]):
                pixels = raw
        if pixels is None:
            pixels, per_image = _decode(path, cfg, info.sop_instance_uids[fi])
        for pos, frame in wanted[fi]:
            if frame >= pixels.shape[0]:
                raise SeriesReadError(f"{path}: frame {frame + 1} missing from the pixel data")
            slope, intercept = info.rescale[pos] if info.rescale else per_image[frame]
            k, t = pos % n_slices, pos // n_slices
            dest = data[:, :, k, t] if len(shape) == 4 else data[:, :, k]
            dest[...] = pixels[frame].T
            if slope != 1.0 or intercept != 0.0:
                dest *= np.float32(slope)
                dest += np.float32(intercept)

    if cfg.read_workers > 1 and len(wanted) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(cfg.read_workers) as pool:
            list(pool.map(read_one, list(wanted)))
    else:
        for fi in wanted:
            read_one(fi)
    affine = np.asarray(info.affine, dtype=np.float64)
    log.debug("loaded series %s shape %s", short_hash(info.series_instance_uid), shape)
    return SeriesVolume(data=data, affine=affine, info=info)


def _finite(vol: SeriesVolume) -> SeriesVolume:
    """Refuse a volume holding NaN or infinite values (absurd RescaleSlope/Intercept or NIfTI
    scaling overflowing float32, NaN floats stored in the file): never assessed as if real."""
    if not np.isfinite(vol.data).all():
        bad = int(np.count_nonzero(~np.isfinite(vol.data)))
        raise SeriesReadError(f"series {vol.info.series_instance_uid}: {bad} voxel values are "
                              "not finite (NaN or overflow after rescaling): refused")
    return vol


def load_series(info: SeriesInfo, config: dict[str, Any] | IOConfig | None = None) -> SeriesVolume:
    """Decode one series into a float32 volume (4D when multi-volume) with its RAS+ affine.

    Args:
        info: a SeriesInfo from `find_studies`.
        config: full config mapping or IOConfig (defaults if None).

    Raises:
        ResourceLimitError: the volume would exceed the configured size limits.
        SeriesReadError: irregular geometry, undecodable pixels, non-finite values, or files
            changed.
        UnreadableFileError: a source file can no longer be read.
    """
    cfg = io_config(config)
    if info.source == "nifti":
        from screener.io.nifti import load_nifti

        return _finite(load_nifti(info, cfg))
    try:
        return _finite(load_dicom(info, cfg))
    except InputError:
        raise
    except MemoryError:
        raise ResourceLimitError(f"series {info.series_instance_uid}: out of memory") from None
    except Exception as exc:  # any decoder failure is bad input, not a crash of the batch
        raise SeriesReadError(f"series {info.series_instance_uid}: {type(exc).__name__}: {exc}") from None
