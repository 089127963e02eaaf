"""MRI negative-study screener. Research and worklist-triage aid, not a diagnostic device."""

__version__ = "0.1.0"
