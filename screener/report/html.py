"""report.html: one self-contained page a person can open (no external files or scripts).

Shows the decision, score and confidence, the reasons, the findings table, the series used and
not used, the resolution limits with their statement, the operating point, the disclaimer,
and the overlay embedded as a base64 PNG. Every value from the report is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from screener.atomic import write_text_atomic

_COLOURS = {"negative": "#1b7f3b", "flagged": "#b3261e", "indeterminate": "#8a6d00"}

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
h1{font-size:1.4em} .decision{color:#fff;padding:.2em .6em;border-radius:.3em}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #bbb;padding:.25em .6em;
text-align:left;font-size:.9em} .note{background:#fff4d6;border:1px solid #e0c060;padding:.6em}
img{max-width:100%;background:#000} code{font-size:.85em}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any, fmt: str = ".3f") -> str:
    return "n/a" if value is None else format(float(value), fmt)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(report: Mapping[str, Any], overlay_png: bytes | None = None) -> str:
    """The page as a string.

    Args:
        report: a validated report.json dict.
        overlay_png: overlay image bytes to embed (None: no picture).
    """
    decision = str(report["decision"])
    study = report["study"]
    lim = report["resolution_limits"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>screener: {_e(decision)}</title><style>{_STYLE}</style></head><body>",
        f"<p class='note'>{_e(report['disclaimer'])}</p>",
        f"<h1>Study <code>{_e(study.get('study_instance_uid'))}</code>: "
        f"<span class='decision' style='background:{_COLOURS.get(decision, '#444')}'>"
        f"{_e(decision.upper())}</span></h1>",
        _table(["abnormality score", "confidence (P decision right)", "model", "device"],
               [[_num(report["abnormality_score"]), _num(report["confidence"]),
                 f"{report['model'].get('name')} {report['model'].get('version')}",
                 report["device"]]]),
    ]
    if report["reasons"]:
        parts.append("<h2>Reasons</h2><ul>"
                     + "".join(f"<li>{_e(r)}</li>" for r in report["reasons"]) + "</ul>")
    if overlay_png:
        data = base64.b64encode(overlay_png).decode("ascii")
        parts.append(f"<h2>Key slices</h2><img alt='overlay of key slices' "
                     f"src='data:image/png;base64,{data}'>")
    parts.append("<h2>Findings</h2>")
    if report["findings"]:
        verified = any("verifier_probability" in f for f in report["findings"])
        parts.append(_table(
            ["#", "volume (ml)", "max diameter (mm)", "centroid RAS (mm)", "signal", "probability"]
            + (["lesion-likeness (verifier)"] if verified else []) + ["series"],
            [[n, _num(f["volume_ml"], ".2f"), _num(f["max_diameter_mm"], ".1f"),
              ", ".join(f"{v:.1f}" for v in f["centroid_ras_mm"]), f["signal"],
              _num(f["probability"], ".2f")]
             + ([_num(f.get("verifier_probability"), ".2f")] if verified else []) + [f["series"]]
             for n, f in enumerate(report["findings"], start=1)]))
    else:
        parts.append("<p>None above the detection threshold.</p>")
    parts.append("<h2>Resolution limits</h2>")
    parts.append(_table(
        ["voxel (mm)", "slice thickness (mm)", "gap (mm)", "smallest detectable diameter (mm)",
         "sensitivity at that size"],
        [[" x ".join(f"{v:.2f}" for v in lim["voxel_mm"]) if lim.get("voxel_mm") else "n/a",
          _num(lim.get("slice_thickness_mm"), ".2f"), _num(lim.get("slice_gap_mm"), ".2f"),
          _num(lim.get("min_detectable_diameter_mm"), "g") if lim.get("min_detectable_diameter_mm")
          is not None else "no claim",
          _num(lim.get("sensitivity_at_min_diameter"), ".2f")]]))
    parts.append(f"<p class='note'>{_e(lim['statement'])}</p>")
    op = report.get("operating_point")
    if op:
        parts.append("<h2>Operating point</h2>" + _table(
            ["threshold", "target sensitivity", "method", "abnormal / normal calibration cases",
             f"FNR upper bound ({_num(1 - float(op['delta']), '.0%')} confidence)"],
            [[_num(op["threshold"]), _num(op["target_sensitivity"], ".2f"), op["method"],
              f"{op['n_abnormal']} / {op['n_normal']}", _num(op["fnr_upper_bound"])]]))
    parts.append("<h2>Series</h2>" + _table(
        ["series", "sequence", "voxel (mm)", "thickness", "gap", "shape", "used", "why not used"],
        [[s.get("series_description") or s.get("series_instance_uid") or s.get("path"),
          s["sequence"], " x ".join(f"{v:.2f}" for v in s["voxel_mm"]),
          _num(s["slice_thickness_mm"], ".2f"), _num(s["slice_gap_mm"], ".2f"),
          " x ".join(str(v) for v in s["shape"]), "yes" if s["used"] else "no",
          "; ".join(s["why_not_used"])] for s in report["series"]]))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_html(report: Mapping[str, Any], folder: str | Path, path: str | Path | None = None,
               overlay_png: bytes | None = None) -> Path:
    """render_html() written atomically to ``path`` (default ``folder/report.html``).

    The overlay is embedded from ``overlay_png`` or, when None, from the file named by
    ``report["outputs"]["overlay"]`` inside ``folder`` (if it exists).
    """
    folder = Path(folder)
    if overlay_png is None:
        name = (report.get("outputs") or {}).get("overlay")
        if name and (folder / name).is_file():
            overlay_png = (folder / name).read_bytes()
    return write_text_atomic(path if path is not None else folder / "report.html",
                             render_html(report, overlay_png))
