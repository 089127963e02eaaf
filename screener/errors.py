"""Typed errors for bad input.

Every message says what is wrong and where (a path, a UID, a short hash), never a patient
identifier (PatientName, PatientID, PatientBirthDate, AccessionNumber). Callers catch
`InputError` to turn any bad input into an `indeterminate` result with the message as reason.
"""

from __future__ import annotations


class InputError(Exception):
    """Bad input: the message says what and where, without patient identifiers."""


class UnreadableFileError(InputError):
    """A file is empty, truncated, garbage, or claims to be DICOM/NIfTI but cannot be parsed."""


class SeriesReadError(InputError):
    """A series was found but cannot be built into a trustworthy volume."""


class ResourceLimitError(InputError):
    """Input declares sizes beyond the configured limits; refused before allocating."""
