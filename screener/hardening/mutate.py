"""Seeded mutations of DICOM series for fuzzing ingestion.

A seed is a small series (a few files as bytes). `mutate(seed, rng)` returns a new file set and
a label saying what was done: byte flips, truncation, hostile tag values (zero, negative, NaN,
huge, wrong type) for the size and geometry elements, degenerate ImageOrientationPatient,
missing or duplicated ImagePositionPatient, element length fields that lie, pixel data shorter
or longer than declared, a transfer syntax that does not match the encoding, dropped elements,
and a broken file preamble. Everything is derived from the `numpy.random.Generator` passed in,
so a case is reproducible from its seed name and case number.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import numpy as np

Files = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Seed:
    """A series to mutate: file names and bytes (all files form one input folder).

    `kinds` limits the mutations (NIfTI seeds take NIFTI_KINDS); None = every DICOM mutation.
    """

    name: str
    files: tuple[tuple[str, bytes], ...]
    kinds: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Mutant:
    """A mutated input: its files and what was done to them."""

    seed: str
    kind: str
    detail: str
    files: tuple[tuple[str, bytes], ...]


# Hostile values per element. US elements get raw 16-bit values (32768+ reads as negative when
# taken as signed); DS/IS elements get strings.
US_VALUES: tuple[int, ...] = (0, 1, 2, 3, 7, 12, 33, 64, 255, 4096, 32767, 32768, 65535)
NUMBER_STRINGS: tuple[str, ...] = ("0", "-1", "-0", "NaN", "nan", "inf", "-inf", "1e308",
                                   "-1e308", "1e-308", "99999999", "2147483648", "abc", "",
                                   "1.5", " ", "0\\0", "1\\", "\\")
US_TAGS: dict[str, int] = {
    "Rows": 0x00280010, "Columns": 0x00280011, "BitsAllocated": 0x00280100,
    "BitsStored": 0x00280101, "HighBit": 0x00280102, "PixelRepresentation": 0x00280103,
    "SamplesPerPixel": 0x00280002,
}
STRING_TAGS: dict[str, tuple[int, str]] = {
    "NumberOfFrames": (0x00280008, "IS"), "PixelSpacing": (0x00280030, "DS"),
    "SliceThickness": (0x00180050, "DS"), "SpacingBetweenSlices": (0x00180088, "DS"),
    "RescaleSlope": (0x00281053, "DS"), "RescaleIntercept": (0x00281052, "DS"),
    "ImagePositionPatient": (0x00200032, "DS"), "ImageOrientationPatient": (0x00200037, "DS"),
    "EchoTime": (0x00180081, "DS"), "InstanceNumber": (0x00200013, "IS"),
    "AcquisitionNumber": (0x00200012, "IS"), "SeriesNumber": (0x00200011, "IS"),
}
DEGENERATE_IOP: tuple[str, ...] = (
    "0\\0\\0\\0\\0\\0", "1\\0\\0\\1\\0\\0", "1\\0\\0\\0\\1", "NaN\\0\\0\\0\\1\\0",
    "2\\0\\0\\0\\2\\0", "1\\0\\0\\0\\1\\0\\0", "1e308\\0\\0\\0\\1\\0", "0.7071\\0.7071\\0\\0.7071\\0.7071\\0",
    "-1\\0\\0\\0\\-1\\0",
)
TRANSFER_SYNTAXES: tuple[str, ...] = (
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5", "1.2.3.4", "",
)
DROPPABLE: tuple[int, ...] = (
    0x7FE00010, 0x00280010, 0x00280011, 0x00280100, 0x0020000D, 0x0020000E, 0x00080018,
    0x00080016, 0x00280004, 0x00200032, 0x00200037, 0x00280030, 0x00280002, 0x52009230,
    0x52009229,
)


def _read(data: bytes, stop: bool = False) -> Any:
    import pydicom

    return pydicom.dcmread(BytesIO(data), force=True, stop_before_pixels=stop)


def _write(ds: Any) -> bytes:
    """Encode `ds` as it was read (same transfer syntax), without validating values."""
    import pydicom
    from pydicom import config

    old = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.IGNORE
    try:
        buf = BytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=False)
        return buf.getvalue()
    finally:
        config.settings.writing_validation_mode = old


def _raw_element(ds: Any, tag: int, vr: str, raw: bytes) -> None:
    """Put an element whose value is exactly `raw` (no conversion, no validation)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    t = Tag(tag)
    little = getattr(ds, "is_little_endian", True)
    implicit = getattr(ds, "is_implicit_VR", False)
    if little is None:
        little = True
    ds[t] = RawDataElement(t, None if implicit else vr, len(raw), raw, 0, bool(implicit),
                           bool(little))


def _pad(text: str) -> bytes:
    raw = text.encode("latin-1", "replace")
    return raw + b" " if len(raw) % 2 else raw


def _pick_targets(rng: np.random.Generator, files: Files) -> list[int]:
    """One file, or (a third of the time) every file of the series."""
    if len(files) > 1 and rng.random() < 0.33:
        return list(range(len(files)))
    return [int(rng.integers(len(files)))]


def _each(files: Files, targets: list[int], fn: Callable[[bytes], bytes]) -> Files:
    out = list(files)
    for i in targets:
        out[i] = (out[i][0], fn(out[i][1]))
    return out


def _pixel_offset(data: bytes) -> int:
    """Start of the PixelData element header, or len(data) // 2 when not found."""
    i = data.rfind(b"\xe0\x7f\x10\x00")
    return i if i > 132 else len(data) // 2


def m_byte_flip(rng: np.random.Generator, files: Files) -> tuple[str, Files]:
    idx = int(rng.integers(len(files)))
    data = bytearray(files[idx][1])
    if not data:  # an earlier stacked mutation truncated it to nothing: no byte to flip
        return f"file {idx} empty, nothing flipped", list(files)
    n = int(rng.choice([1, 2, 4, 8, 32]))
    header_end = min(_pixel_offset(bytes(data)) + 16, len(data))
    for _ in range(n):
        # Mostly in the header (pixel bytes rarely matter for parsing), sometimes anywhere.
        hi = header_end if rng.random() < 0.85 else len(data)
        pos = int(rng.integers(0, max(hi, 1)))
        data[pos] ^= 1 << int(rng.integers(8))
    out = list(files)
    out[idx] = (files[idx][0], bytes(data))
    return f"{n} bit(s) in file {idx}", out


def m_truncate(rng: np.random.Generator, files: Files) -> tuple[str, Files]:
    idx = int(rng.integers(len(files)))
    data = files[idx][1]
    pix = _pixel_offset(data)
    where = rng.choice(["header", "pixels", "tiny", "one_short"])
    if where == "header":
        cut = int(rng.integers(0, max(pix, 1)))
    elif where == "pixels":
        cut = int(rng.integers(pix, max(len(data), pix + 1)))
    elif where == "tiny":
        cut = int(rng.integers(0, 140))
    else:
        cut = max(len(data) - 1, 0)
    out = list(files)
    out[idx] = (files[idx][0], data[:cut])
    return f"file {idx} cut at {cut} of {len(data)} ({where})", out


def m_tag_value(rng: np.random.Generator, files: Files) -> tuple[str, Files]:
    targets = _pick_targets(rng, files)
    if rng.random() < 0.45:
        name = str(rng.choice(list(US_TAGS)))
        value = int(rng.choice(US_VALUES))

        def fn(data: bytes) -> bytes:
            ds = _read(data)
            _raw_element(ds, US_TAGS[name], "US",
                         struct.pack("<H" if ds.is_little_endian is not False else ">H", value))
            return _write(ds)

        return f"{name}={value} in {len(targets)} file(s)", _each(files, targets, fn)
    name = str(rng.choice(list(STRING_TAGS)))
    tag, vr = STRING_TAGS[name]
    text = str(rng.choice(NUMBER_STRINGS))
    if name in ("PixelSpacing",) and rng.random() < 0.5:
        text = f"{text}\\{rng.choice(NUMBER_STRINGS)}"

    def fn(data: bytes) -> bytes:
        ds = _read(data)
        _raw_element(ds, tag, vr, _pad(text))
        return _write(ds)

    return f"{name}={text!r} in {len(targets)} file(s)", _each(files, targets, fn)


def m_wrong_vr(rng: np.random.Generator, files: Files) -> tuple[str, Files]:
    """Size and geometry elements written with a different VR and byte layout."""
    targets = _pick_targets(rng, files)
    choice = int(rng.integers(5))
    label, tag, vr, raw = [
        ("Rows as UL", 0x00280010, "UL", struct.pack("<I", 2 ** 31 + 7)),
        ("Rows as DS 'NaN'", 0x00280010, "DS", b"NaN "),
        ("Columns as 1 byte", 0x00280011, "US", b"\x40"),
        ("PixelSpacing as FD", 0x00280030, "FD", struct.pack("<dd", float("nan"), 1e300)),
        ("NumberOfFrames as US", 0x00280008, "US", struct.pack("<H", 65535)),
    ][choice]

    def fn(data: bytes) -> bytes:
        ds = _read(data)
        _raw_element(ds, tag, vr, raw)
        return _write(ds)

    return f"{label} in {len(targets)} file(s)", _each(files, targets, fn)


def m_orientation(rng: np.random.Generator, files: Files) -> tuple[str, Files]:
    targets = _pick_targets(rng, files)
    iop = str(rng.choice(DEGENERATE_IOP))

    def fn(data: bytes) -> bytes:
        ds = _read(data)
        if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
            for seq_kw in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
                for item in ds.get(seq_kw) or []:
                    for plane in item.get("PlaneOrientationSequence") or []:
                        _raw_element(plane, 0x00200037, "DS", _pad(iop))
        _raw_element(ds, 0x00200037, "DS", _pad(iop))
        return _write(ds)

    return f"ImageOrientationPatient={iop!r} in {len(targets)} file(s)", _each(files, targets, fn)


def m_position(rng: np.random.Generator, files: Files) -> tuple[str, Files]:
    how = str(rng.choice(["missing", "duplicate", "nan", "short"]))
    targets = _pick_targets(rng, files)
    first = _read(files[0][1], stop=True).get("ImagePositionPatient")
    dup = "\\".join(str(v) for v in first) if first is not None else "0\\0\\0"

    def fn(data: bytes) -> bytes:
        ds = _read(data)
        groups = [p for seq_kw in ("SharedFunctionalGroupsSequence",
                                   "PerFrameFunctionalGroupsSequence")
                  for item in ds.get(seq_kw) or [] for p in item.get("PlanePositionSequence") or []]
        for holder in [ds, *groups]:
            if how == "missing":
                if 0x00200032 in holder:
                    del holder[0x00200032]
            elif how == "duplicate":
                _raw_element(holder, 0x00200032, "DS", _pad(dup))
            elif how == "nan":
                _raw_element(holder, 0x00200032, "DS", _pad("NaN\\0\\inf"))
            else:
                _raw_element(holder, 0x00200032, "DS", _pad("1\\2"))
        return _write(ds)

    return f"ImagePositionPatient {how} in {len(targets)} file(s)", _each(files, targets, fn)


def _find_element(data: bytes, tag: int) -> tuple[int, bool] | None:
    """(offset, explicit VR) of the first little-endian occurrence of `tag` after the preamble."""
    key = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    i = data.find(key, 132)
    if i < 0 or i + 8 > len(data):
        return None
    vr = data[i + 4:i + 6]
    return i, vr.isalpha() and vr.isupper()


def m_length_field(rng: np.random.Generator, files: Files) -> tuple[str, Files]:
    """An element header whose length lies: odd, one too long, huge, or undefined."""
    idx = int(rng.integers(len(files)))
    data = bytearray(files[idx][1])
    tag = int(rng.choice([0x00280010, 0x00280030, 0x00200032, 0x00200037, 0x0020000D,
                          0x00080018, 0x00180050, 0x00280008, 0x7FE00010, 0x00080060]))
    found = _find_element(bytes(data), tag)
    if found is None:
        return m_byte_flip(rng, files)
    off, explicit = found
    vr = bytes(data[off + 4:off + 6]) if explicit else b""
    long_form = explicit and vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"OD", b"OL", b"UC",
                                    b"UR", b"OV")
    mode = str(rng.choice(["plus1", "minus1", "odd", "huge", "undefined", "zero"]))
    if explicit and not long_form:
        (old,) = struct.unpack_from("<H", data, off + 6)
        new = {"plus1": old + 1, "minus1": max(old - 1, 0), "odd": old | 1, "huge": 0xFFFF,
               "undefined": 0xFFFF, "zero": 0}[mode] & 0xFFFF
        struct.pack_into("<H", data, off + 6, new)
    else:
        pos = off + (8 if explicit else 4)
        if pos + 4 > len(data):
            return m_byte_flip(rng, files)
        (old,) = struct.unpack_from("<I", data, pos)
        new = {"plus1": old + 1, "minus1": max(old - 1, 0), "odd": old | 1, "huge": 0xFFFFFFF0,
               "undefined": 0xFFFFFFFF, "zero": 0}[mode] & 0xFFFFFFFF
        struct.pack_into("<I", data, pos, new)
    out = list(files)
    out[idx] = (files[idx][0], bytes(data))
    return f"length of ({tag >> 16:04X},{tag & 0xFFFF:04X}) {mode} in file {idx}", out


def m_pixel_length(rng: np.random.Generator, files: Files) -> tuple[str, Files]:
    """PixelData shorter or longer than Rows x Columns x frames x bytes declare."""
    targets = _pick_targets(rng, files)
    how = str(rng.choice(["half", "minus2", "odd", "empty", "double", "plus2"]))

    def fn(data: bytes) -> bytes:
        ds = _read(data)
        if "PixelData" not in ds:
            return data
        px = bytes(ds.PixelData)
        new = {"half": px[:len(px) // 2], "minus2": px[:-2], "odd": px[:-1], "empty": b"",
               "double": px + px, "plus2": px + b"\x00\x00"}[how]
        if how == "odd":
            new = new + b""  # odd length on purpose
        ds.PixelData = new
        return _write(ds)

    return f"PixelData {how} in {len(targets)} file(s)", _each(files, targets, fn)


def m_transfer_syntax(rng: np.random.Generator, files: Files) -> tuple[str, Files]:
    """File meta says another transfer syntax than the dataset is encoded in."""
    targets = _pick_targets(rng, files)
    uid = str(rng.choice(TRANSFER_SYNTAXES))

    def fn(data: bytes) -> bytes:
        from pydicom.filewriter import write_file_meta_info
        from pydicom.filebase import DicomBytesIO

        ds = _read(data, stop=False)
        meta = ds.file_meta
        start = _meta_end(data)
        if start is None:
            return data
        meta.TransferSyntaxUID = uid
        buf = DicomBytesIO()
        buf.is_little_endian, buf.is_implicit_VR = True, False
        write_file_meta_info(buf, meta, enforce_standard=False)
        return data[:128] + b"DICM" + buf.getvalue() + data[start:]

    return f"TransferSyntaxUID={uid!r} in {len(targets)} file(s)", _each(files, targets, fn)


def _meta_end(data: bytes) -> int | None:
    """Offset where the dataset starts after the group-2 file meta (explicit VR LE)."""
    if data[128:132] != b"DICM":
        return None
    pos = 132
    while pos + 8 <= len(data):
        group = struct.unpack_from("<H", data, pos)[0]
        if group != 2:
            return pos
        vr = data[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR"):
            length = struct.unpack_from("<I", data, pos + 8)[0]
            pos += 12 + length
        else:
            length = struct.unpack_from("<H", data, pos + 6)[0]
            pos += 8 + length
    return None


def m_drop(rng: np.random.Generator, files: Files) -> tuple[str, Files]:
    targets = _pick_targets(rng, files)
    tag = int(rng.choice(DROPPABLE))

    def fn(data: bytes) -> bytes:
        ds = _read(data)
        if tag in ds:
            del ds[tag]
        return _write(ds)

    return f"({tag >> 16:04X},{tag & 0xFFFF:04X}) removed in {len(targets)} file(s)", \
        _each(files, targets, fn)


def m_preamble(rng: np.random.Generator, files: Files) -> tuple[str, Files]:
    idx = int(rng.integers(len(files)))
    data = files[idx][1]
    how = str(rng.choice(["no_marker", "no_preamble", "garbage_meta", "zero"]))
    if how == "no_marker":
        new = data[:128] + b"DICX" + data[132:]
    elif how == "no_preamble":
        new = data[132:]
    elif how == "garbage_meta":
        junk = rng.integers(0, 256, size=64, dtype=np.uint8).tobytes()
        new = data[:132] + junk + data[196:]
    else:
        new = b""
    out = list(files)
    out[idx] = (files[idx][0], new)
    return f"{how} in file {idx}", out


# NIfTI-1 header fields: (byte offset, struct format, hostile values).
NIFTI_FIELDS: dict[str, tuple[int, str, tuple[float, ...]]] = {
    "dim0": (40, "<h", (0, -1, 8, 9, 32767)),
    "dim1": (42, "<h", (0, -1, 1, 32767)),
    "dim3": (46, "<h", (0, -3, 1, 32767)),
    "dim4": (48, "<h", (0, 2, 32767)),
    "datatype": (70, "<h", (0, 1, 3, 128, 1536, 2304, 32767)),
    "bitpix": (72, "<h", (0, 1, 7, 64)),
    "pixdim1": (80, "<f", (0.0, -2.0, float("nan"), float("inf"), 1e30, 1e-30)),
    "pixdim3": (88, "<f", (0.0, -2.0, float("nan"), float("inf"), 1e30)),
    "vox_offset": (108, "<f", (0.0, 1.0, 351.0, 1e9, float("nan"), -352.0)),
    "scl_slope": (112, "<f", (0.0, float("nan"), float("inf"), -1.0, 1e38)),
    "scl_inter": (116, "<f", (float("nan"), float("inf"), -1e38)),
    "qform_code": (252, "<h", (0, 1, 99, -1)),
    "sform_code": (254, "<h", (0, 1, 99, -1)),
    "quatern_b": (256, "<f", (float("nan"), 2.0, 1.0)),
    "srow_x0": (280, "<f", (0.0, float("nan"), float("inf"), 1e30)),
    "srow_z3": (324, "<f", (float("nan"), 1e30)),
    "magic": (344, "4s", (b"n+2\0", b"ni1\0", b"\0\0\0\0")),
    "sizeof_hdr": (0, "<i", (0, 540, -348, 348 << 8)),
}


def m_nifti_field(rng: np.random.Generator, files: Files) -> tuple[str, Files]:
    """A NIfTI-1 header field set to a hostile value (gzip files are re-compressed)."""
    import gzip

    idx = int(rng.integers(len(files)))
    name, data = files[idx]
    gz = data[:2] == b"\x1f\x8b"
    raw = bytearray(gzip.decompress(data) if gz else data)
    field_name = str(rng.choice(list(NIFTI_FIELDS)))
    off, fmt, values = NIFTI_FIELDS[field_name]
    value = values[int(rng.integers(len(values)))]
    struct.pack_into(fmt, raw, off, value)
    new = gzip.compress(bytes(raw), mtime=0) if gz else bytes(raw)
    out = list(files)
    out[idx] = (name, new)
    return f"{field_name}={value!r} in {name}", out


NIFTI_KINDS: tuple[str, ...] = ("byte_flip", "truncate", "nifti_field")

MUTATIONS: dict[str, Callable[[np.random.Generator, Files], tuple[str, Files]]] = {
    "byte_flip": m_byte_flip,
    "truncate": m_truncate,
    "tag_value": m_tag_value,
    "wrong_vr": m_wrong_vr,
    "orientation": m_orientation,
    "position": m_position,
    "length_field": m_length_field,
    "pixel_length": m_pixel_length,
    "transfer_syntax": m_transfer_syntax,
    "drop_element": m_drop,
    "preamble": m_preamble,
    "nifti_field": m_nifti_field,
}
DICOM_KINDS: tuple[str, ...] = tuple(k for k in MUTATIONS if k != "nifti_field")


def mutate(seed: Seed, rng: np.random.Generator, kind: str | None = None) -> Mutant:
    """One mutant of `seed`; `kind` picks the mutation (random when None), and a fifth of
    random mutants get a second mutation on top."""
    files: Files = list(seed.files)
    allowed = list(seed.kinds or DICOM_KINDS)
    kinds = [kind or str(rng.choice(allowed))]
    if kind is None and rng.random() < 0.2:
        kinds.append(str(rng.choice(allowed)))
    details = []
    for k in kinds:
        try:
            detail, files = MUTATIONS[k](rng, files)
        except Exception as exc:  # noqa: BLE001 - a seed the mutator cannot parse: flip bytes
            detail, files = m_byte_flip(rng, files)
            detail = f"{k} not applicable ({type(exc).__name__}); {detail}"
        details.append(detail)
    return Mutant(seed=seed.name, kind="+".join(kinds), detail="; ".join(details),
                  files=tuple(files))
