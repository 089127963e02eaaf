"""Fast path for uncompressed single-segment pixel data: read the bytes straight from the file.

Used only when the transfer syntax is native (implicit/explicit little endian, explicit big
endian), PixelData is the file's last element (verified by reading its element header just before
the pixel bytes: tag (7FE0,0010) and a length equal to the declared size), and the pixel format
needs no bit masking. Anything else returns None and the caller decodes with pydicom.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"


def pixel_dtype(fmt: dict[str, Any]) -> np.dtype | None:
    """numpy dtype of the stored pixels, or None when the fast path does not apply."""
    ts = fmt.get("TransferSyntaxUID")
    bits, stored = fmt.get("BitsAllocated"), fmt.get("BitsStored", fmt.get("BitsAllocated"))
    signed = fmt.get("PixelRepresentation") == 1
    if ts not in (IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE) or fmt.get("SamplesPerPixel", 1) != 1:
        return None
    if bits not in (8, 16, 32) or (signed and stored != bits):
        return None  # signed with fewer stored bits needs sign extension: let pydicom do it
    order = ">" if ts == EXPLICIT_BE else "<"
    return np.dtype(f"{order}{'i' if signed else 'u'}{bits // 8}")


def read_raw(path: Path, fmt: dict[str, Any], n_images: int) -> np.ndarray | None:
    """Stored pixels (n_images, rows, cols) read directly, or None if the layout is not verified."""
    dtype = pixel_dtype(fmt)
    rows, cols = fmt.get("Rows"), fmt.get("Columns")
    if dtype is None or not rows or not cols:
        return None
    nbytes = int(rows) * int(cols) * n_images * dtype.itemsize
    ts = fmt["TransferSyntaxUID"]
    head = 8 if ts == IMPLICIT_LE else 12
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            start = size - nbytes - head
            if start < 132:
                return None
            fh.seek(start)
            header = fh.read(head)
            if ts == EXPLICIT_BE:
                group, elem = struct.unpack(">HH", header[:4])
                length = struct.unpack(">I", header[8:12])[0]
                vr_ok = header[4:6] in (b"OW", b"OB")
            else:
                group, elem = struct.unpack("<HH", header[:4])
                if head == 8:
                    length, vr_ok = struct.unpack("<I", header[4:8])[0], True
                else:
                    length = struct.unpack("<I", header[8:12])[0]
                    vr_ok = header[4:6] in (b"OW", b"OB")
            if (group, elem) != (0x7FE0, 0x0010) or length != nbytes or not vr_ok:
                return None
            data = np.fromfile(fh, dtype=dtype, count=nbytes // dtype.itemsize)
    except OSError:
        return None
    if data.size * dtype.itemsize != nbytes:
        return None
    return data.reshape(n_images, int(rows), int(cols))
