"""Result types of study discovery."""

from __future__ import annotations

from dataclasses import dataclass, field

from screener.types import Study


@dataclass
class FileError:
    """A file that could not be read, and why (no patient identifiers in `reason`)."""

    path: str
    reason: str
    kind: str = "UnreadableFileError"


@dataclass
class Discovery:
    """What `find_studies` found: studies, the count of skipped non-DICOM files, file errors."""

    studies: list[Study] = field(default_factory=list)
    skipped: int = 0
    errors: list[FileError] = field(default_factory=list)
