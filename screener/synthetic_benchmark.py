"""`screener evaluate --synthetic N --seed S -o OUTDIR`: the held-out synthetic benchmark.

The model side lives in screener.model.synth_eval (held-out label maps, its own seed space,
the same predict/analyse path as real series). This module runs it at the operating point
fixed by the weights' calibration.json (never fitted here), adds Wilson 95 % intervals to every
cell and to the specificity, and writes OUTDIR/benchmark.json (schema_version "1", the table
that ships with the weights) plus OUTDIR/synthetic_cases.csv (one row per drawn head) and
OUTDIR/benchmark.png (detection by size and slice thickness, and by lesion contrast).
Without a calibration there is no operating point: the command stops with a clear message.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import sys
from pathlib import Path
from typing import Any

from screener.atomic import write_json_atomic, write_text_atomic
from screener.metrics import wilson_interval


class CalibrationMissingError(RuntimeError):
    """The weights have no calibration.json, so the benchmark has no operating point."""


def with_intervals(table: dict[str, Any]) -> dict[str, Any]:
    """Add `ci95` (Wilson) to each cell's sensitivity and to the specificity."""
    out = dict(table)
    cells = []
    for c in table.get("cells", []):
        ci = wilson_interval(int(c["detected"]), int(c["n"]))
        cells.append({**c, "ci95": list(ci) if ci else None})
    out["cells"] = cells
    spec = dict(table.get("specificity") or {})
    ci = wilson_interval(int(spec.get("negative", 0)), int(spec.get("n", 0)))
    spec["ci95"] = list(ci) if ci else None
    out["specificity"] = spec
    return out


def pooled_sensitivity_by_diameter(table: dict[str, Any], thickness_mm: float | None = None
                                   ) -> dict[float, dict[str, Any]]:
    """Sensitivity per diameter pooled over kind and contrast, and over slice thickness unless
    one is given (for the summary and the figure)."""
    pooled: dict[float, list[int]] = {}
    for c in table["cells"]:
        if thickness_mm is not None and float(c["slice_thickness_mm"]) != thickness_mm:
            continue
        p = pooled.setdefault(float(c["diameter_mm"]), [0, 0])
        p[0] += int(c["detected"])
        p[1] += int(c["n"])
    out = {}
    for d, (k, n) in sorted(pooled.items()):
        ci = wilson_interval(k, n)
        out[d] = {"k": k, "n": n, "value": k / n if n else None, "ci95": list(ci) if ci else None}
    return out


def pooled_by_contrast_sd(table: dict[str, Any], min_diameter_mm: float = 10.0
                          ) -> dict[float, dict[str, Any]]:
    """Sensitivity per contrast-strength bin (lesion_contrast_sd lower edge), pooled over the
    lesions of at least min_diameter_mm: tells lesions drawn near-invisible from missed ones."""
    pooled: dict[float, list[int]] = {}
    for c in table.get("by_contrast_sd", []):
        if float(c["diameter_mm"]) >= min_diameter_mm:
            p = pooled.setdefault(float(c["contrast_sd_min"]), [0, 0])
            p[0] += int(c["detected"])
            p[1] += int(c["n"])
    out = {}
    for lo, (k, n) in sorted(pooled.items()):
        ci = wilson_interval(k, n)
        out[lo] = {"k": k, "n": n, "value": k / n if n else None, "ci95": list(ci) if ci else None}
    return out


def _cases_csv(results: list[Any], threshold: float) -> str:
    buf = io.StringIO()
    from screener.model.synth_eval import size_class_mm

    fields = ["lesion", "kind", "drawn_diameter_mm", "measured_diameter_mm", "size_class_mm",
              "slice_thickness_mm", "contrast", "contrast_sd", "score", "hit", "flagged", "detected"]
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    for r in results:
        row = dataclasses.asdict(r) if dataclasses.is_dataclass(r) else dict(r)
        row["drawn_diameter_mm"] = row.get("diameter_mm")
        if row.get("measured_diameter_mm") is not None:
            row["measured_diameter_mm"] = round(float(row["measured_diameter_mm"]), 2)
        row["size_class_mm"] = size_class_mm(row.get("measured_diameter_mm"))
        row["flagged"] = row["score"] >= threshold
        row["detected"] = bool(row["flagged"] and row.get("hit") and row.get("lesion"))
        w.writerow(row)
    return buf.getvalue()


def run_synthetic(n: int, seed: int, outdir: str | Path, config: dict[str, Any],
                  device: str = "auto") -> dict[str, Any]:
    """Draw and screen N held-out synthetic heads; write benchmark.json; return the table."""
    from screener.calibrate import Calibration
    from screener.model.synth_eval import benchmark_table, run_cases
    from screener.pipeline import load_model

    model = load_model(config, device)
    cal_path = Path(model.weights_dir) / "calibration.json"
    if not cal_path.exists():
        raise CalibrationMissingError(
            f"{cal_path} not found: the model has no calibrated operating point; run the "
            "calibration (screener.model.synth_eval.calibrate) before the benchmark")
    from screener.binding import calibration_mismatch, score_settings

    cal = Calibration.load(cal_path)
    settings = score_settings(model.config, config)
    if why := calibration_mismatch(cal, model.weights_sha256, settings):
        raise CalibrationMissingError(
            f"{cal_path} was {why}: re-run the calibration (screener.model.synth_eval.calibrate) "
            "with this config before the benchmark")
    threshold = float(cal.threshold)
    results = run_cases(n, seed, "bench", model, config)
    info = {"name": model.name, "version": model.version, "weights_sha256": model.weights_sha256,
            "settings": settings}
    table = with_intervals(benchmark_table(results, threshold, info, seed))
    table["n_drawn"] = n
    table["n_screened"] = len(results)  # lesion draws that fell outside the brain are skipped
    out = Path(outdir)
    write_json_atomic(out / "benchmark.json", table)
    write_text_atomic(out / "synthetic_cases.csv", _cases_csv(results, threshold))
    from screener.plots import benchmark_plot

    benchmark_plot(out / "benchmark.png", table)  # after the table: a figure never costs the figures
    return table


def run_synthetic_cli(args: argparse.Namespace, config: dict[str, Any]) -> int:
    """Entry point for `screener evaluate --synthetic N --seed S -o OUTDIR`."""
    try:
        table = run_synthetic(args.synthetic, args.seed, args.output, config, device=args.device)
    except CalibrationMissingError as exc:
        print(f"screener evaluate --synthetic: {exc}", file=sys.stderr)
        return 2
    spec = table["specificity"]
    print(f"benchmark.json: {table['n_screened']} heads (seed {table['seed']}, "
          f"threshold {table['score_threshold']:.4f})")
    from screener.model.synth_eval import DIAMETERS_MM, contrast_bin_label

    for d, p in pooled_sensitivity_by_diameter(table).items():
        ci = p["ci95"]
        upper = [x for x in DIAMETERS_MM if x > d]
        span = f"{d:g}-{upper[0]:g} mm" if upper else f">= {d:g} mm"
        print(f"  lesions measuring {span}: sensitivity {p['k']}/{p['n']}"
              + (f" = {p['value']:.3f} (95% CI {ci[0]:.2f}-{ci[1]:.2f})" if ci else ""))
    if table.get("lesions_below_smallest_class"):
        print(f"  lesions measuring under {DIAMETERS_MM[0]:g} mm (not in any class): "
              f"{table['lesions_below_smallest_class']}")
    for lo, p in pooled_by_contrast_sd(table).items():
        print(f"  lesions measuring >= 10 mm standing out {contrast_bin_label(lo)}: "
              f"sensitivity {p['k']}/{p['n']}")
    ci = spec.get("ci95")
    print(f"  specificity (lesion-free): {spec['negative']}/{spec['n']}"
          + (f" = {spec['value']:.3f} (95% CI {ci[0]:.2f}-{ci[1]:.2f})" if ci else ""))
    return 0
