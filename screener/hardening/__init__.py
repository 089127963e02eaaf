"""Hardening: log redaction, safe path references, time limits, and the input fuzzer.

Modules:
    logs        logging.Filter that keeps identifiers and file paths out of logs; `path_ref`.
    timelimit   a per-study wall-clock limit for code running in any thread.
    mutate      seeded mutations of DICOM files (bytes, tags, pixel data, transfer syntax).
    fuzz        runs mutated inputs through ingestion in a sandboxed child, tallies outcomes.
"""
