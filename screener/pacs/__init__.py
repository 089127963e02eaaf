"""PACS-side service: `screener serve` (DICOM Storage SCP) and `screener watch` (Orthanc).

Modules: settings (typed `serve:`/`watch:` config), spool (durable instance files), state
(SQLite: instances, study generations, screenings, outputs to deliver), runner (screening child
process with a per-study time limit), worker (quiet-period completion, exactly-once screening,
delivery), sender (C-STORE, STOW-RS), service (recovery, SIGTERM), scp, orthanc.
"""
