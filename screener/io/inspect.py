"""`screener inspect INPUT... [--json] [--nifti OUTDIR]`: list studies and series found.

Exit code 0 when every file and requested NIfTI was read/written, 1 when some file or series
failed (the rest is still listed), 2 when nothing readable was found.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from screener.errors import InputError
from screener.io.series import short_hash
from screener.types import SeriesInfo


def series_record(s: SeriesInfo) -> dict[str, Any]:
    """JSON-able description of a series (no patient identifiers)."""
    return {
        "series_instance_uid": s.series_instance_uid, "series_number": s.series_number,
        "series_description": s.series_description, "split_key": s.split_key,
        "sequence": s.sequence.value, "source": s.source, "shape": list(s.shape),
        "voxel_mm": [round(v, 5) for v in s.voxel_mm], "slice_thickness_mm": s.slice_thickness_mm,
        "slice_gap_mm": s.slice_gap_mm, "orientation": s.orientation,
        "affine": [[round(v, 5) for v in row] for row in s.affine] if s.affine else None,
        "n_files": len(s.source_files), "warnings": list(s.warnings),
        "modality": s.modality, "body_part": s.body_part,
        "headers": {k: v for k, v in s.headers.items() if isinstance(v, (str, int, float, list, bool))},
    }


def nifti_name(study_uid: str, s: SeriesInfo) -> str:
    """File name for a series: <number>_<description>_<uid hash>.nii.gz (split parts differ)."""
    desc = re.sub(r"[^A-Za-z0-9]+", "-", s.series_description).strip("-")[:40] or "series"
    num = f"{s.series_number:04d}_" if s.series_number is not None else ""
    tag = short_hash(s.series_instance_uid + "|" + s.split_key, 8)
    return f"{short_hash(study_uid, 8)}/{num}{desc}_{tag}.nii.gz"


def _table(result: dict[str, Any]) -> str:
    lines = []
    for st in result["studies"]:
        lines.append(f"Study {st['study_instance_uid']}  ({len(st['series'])} series)  from {st['source']}")
        for s in st["series"]:
            vox = "x".join(f"{v:.3g}" for v in s["voxel_mm"])
            thick = "?" if s["slice_thickness_mm"] is None else f"{s['slice_thickness_mm']:.3g}"
            gap = "?" if s["slice_gap_mm"] is None else f"{s['slice_gap_mm']:.3g}"
            num = "-" if s["series_number"] is None else s["series_number"]
            lines.append(f"  [{num}] {s['series_description'] or '(no description)'}"
                         f"{'  {' + s['split_key'] + '}' if s['split_key'] else ''}")
            lines.append(f"      {s['sequence']:<9} shape {'x'.join(map(str, s['shape']))}  voxel {vox} mm  "
                         f"thickness {thick} mm  gap {gap} mm  {s['orientation'] or '-'}  "
                         f"{s['n_files']} file(s)")
            lines.append(f"      SeriesInstanceUID {s['series_instance_uid']}")
            if s["affine"]:
                rows = "; ".join(" ".join(f"{v:.4g}" for v in row) for row in s["affine"][:3])
                lines.append(f"      RAS affine [{rows}]")
            for w in s["warnings"]:
                lines.append(f"      warning {w}")
            if s.get("nifti"):
                lines.append(f"      nifti {s['nifti']}")
            if s.get("nifti_error"):
                lines.append(f"      NOT WRITTEN {s['nifti_error']}")
    lines.append(f"{sum(len(s['series']) for s in result['studies'])} series in "
                 f"{len(result['studies'])} studies; {result['skipped']} non-DICOM file(s) skipped; "
                 f"{len(result['errors'])} error(s)")
    for e in result["errors"]:
        lines.append(f"  error {e['kind']}: {e['reason']}")
    return "\n".join(lines)


def inspect_inputs(inputs: list[str], nifti_dir: str | None = None,
                   config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Discovery as a JSON-able mapping; with `nifti_dir`, each series written as NIfTI."""
    from screener.io import find_studies, load_series, write_nifti

    found = find_studies(inputs, config)
    result: dict[str, Any] = {"studies": [], "skipped": found.skipped,
                              "errors": [e.__dict__ for e in found.errors]}
    for st in found.studies:
        entry = {"study_instance_uid": st.study_instance_uid, "source": st.source, "series": []}
        for s in st.series:
            rec = series_record(s)
            if nifti_dir:
                out = Path(nifti_dir) / nifti_name(st.study_instance_uid, s)
                try:
                    write_nifti(load_series(s, config), out)
                    rec["nifti"] = str(out)
                except InputError as exc:
                    rec["nifti_error"] = f"{type(exc).__name__}: {exc}"
                    result["errors"].append({"path": str(s.source_files[0]) if s.source_files else "",
                                             "reason": str(exc), "kind": type(exc).__name__})
            entry["series"].append(rec)
        result["studies"].append(entry)
    return result


def run_inspect(args: Any) -> int:
    """CLI entry: print the table (or JSON) and return the exit code."""
    config = None
    if getattr(args, "config", None):
        from screener.config import load_config

        config = load_config(args.config)
    result = inspect_inputs(list(args.inputs), getattr(args, "nifti", None), config)
    if args.json:
        json.dump(result, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    else:
        print(_table(result))
    if not result["studies"]:
        return 2
    return 1 if result["errors"] else 0
