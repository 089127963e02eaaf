"""Plain DICOM values: tolerant number/vector parsing and fast raw-element access.

`RawHeader` reads string-valued (DS, IS, CS, UI ...) and US elements straight from pydicom's raw
elements, skipping its per-element conversion machinery, which is most of the cost of discovery
on large folders. Functional-group lookups for enhanced multi-frame objects live here too.
"""

from __future__ import annotations

import math
from typing import Any


def as_float(value: Any) -> float | None:
    try:
        if value is None or value == "":
            return None
        out = float(value)
        return out if math.isfinite(out) else None
    except (TypeError, ValueError):
        return None


def as_int(value: Any) -> int | None:
    v = as_float(value)
    return int(v) if v is not None else None


def as_strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return tuple(str(v) for v in value)
    return (str(value),)


def as_vector(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        vals = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(vals) != n or not all(math.isfinite(v) for v in vals):
        return None
    return vals


class RawHeader:
    """Fast access to a header's plain values without pydicom's element conversion.

    Reads the raw bytes of string-valued (DS, IS, CS, UI ...) and US elements directly: this is
    most of the cost of discovery on large folders. Elements pydicom already converted are used as
    they are.
    """

    def __init__(self, ds: Any) -> None:
        self.ds = ds

    def _elem(self, keyword: str) -> Any:
        tag = _TAGS.get(keyword)
        if tag is None:
            from pydicom.datadict import tag_for_keyword

            tag = _TAGS[keyword] = tag_for_keyword(keyword)
        if tag not in self.ds:
            return None
        return self.ds.get_item(tag)

    def strings(self, keyword: str) -> list[str]:
        elem = self._elem(keyword)
        if elem is None:
            return []
        value = elem.value
        if isinstance(value, bytes):
            text = value.decode("latin-1").strip(" \x00")
            return [v.strip(" \x00") for v in text.split("\\")] if text else []
        if value is None or value == "":
            return []
        return [str(v) for v in as_strings(value)]

    def text(self, keyword: str) -> str:
        return "\\".join(self.strings(keyword))

    def number(self, keyword: str) -> float | None:
        vals = self.strings(keyword)
        return as_float(vals[0]) if vals else None

    def numbers(self, keyword: str, n: int) -> tuple[float, ...] | None:
        return as_vector(self.strings(keyword), n)

    def integer(self, keyword: str) -> int | None:
        vals = self.strings(keyword)
        return as_int(vals[0]) if vals else None

    def us(self, keyword: str) -> int | None:
        elem = self._elem(keyword)
        if elem is None:
            return None
        value = elem.value
        if isinstance(value, bytes):
            if len(value) < 2:
                return None
            return int.from_bytes(value[:2], "little" if getattr(elem, "is_little_endian", True)
                                  else "big")
        return as_int(value)


_TAGS: dict[str, int | None] = {}


def first_item(seq_parent: Any, keyword: str) -> Any:
    """First item of sequence `keyword` in `seq_parent`, or None."""
    if seq_parent is None:
        return None
    seq = seq_parent.get(keyword)
    if not seq:
        return None
    return seq[0]


def group_value(frame_groups: list[Any], seq_kw: str, kw: str) -> Any:
    """Value of `kw` inside functional group `seq_kw`, looked up per frame then shared."""
    for groups in frame_groups:
        item = first_item(groups, seq_kw)
        if item is not None and kw in item:
            return item.get(kw)
    return None
