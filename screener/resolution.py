"""Resolution limits: what a negative result at a study's geometry does and does not cover.

Reads the benchmark table shipped with the weights (weights/<name>/benchmark.json, written by
``screener evaluate --synthetic``) and answers: at this study's slice thickness, what is the
smallest lesion diameter the model detected with at least the configured sensitivity? A cell's
diameter is the lower edge of a class of *measured* lesion diameters (the drawn mask's maximum
diameter in world mm, as findings are measured; ``synth_eval.size_class_mm``), so a claim of d mm
covers lesions measuring d mm and more.

Conservative by construction:
- the study's through-plane size is max(SliceThickness, slice spacing), so a gap counts;
- the benchmark row used is the nearest benchmarked thickness that is >= the study's (a thinner
  benchmark would flatter a thick study); thicker than every row -> no claim;
- the claimed diameter is the smallest one from which *every* larger benchmarked diameter
  also reaches the sensitivity (a lucky small cell cannot undercut a weak larger one), and the
  lesions of that diameter or more at that thickness number at least ``min_n``
  (``decide.min_size_n``): two of two found is not a claim;
- only cells of the series' own contrast count (``decide.resolution_contrast: matched``, the
  default; ``benchmark_contrast``): lesions are found less often on some contrasts than others
  (lesions measuring >= 10 mm at <= 5 mm slices: T1 11/19 and 12/19, the other four 45/52 and
  43/52, for 0.6.1 and 0.7.0), so a
  claim pooled over contrasts would overstate what a T1 study covers. A T1c series is judged by
  the T1 cells (the generator draws no enhancement). A contrast the table holds no lesions of
  gets no claim. ``pooled`` (the behaviour until 2026-12-02) pools all contrasts;
- within those, cells are pooled over lesion kind (detected / n per diameter x thickness), or,
  with ``decide.resolution_aggregate: worst_kind``, the weakest kind's pooled sensitivity.
No claim (``min_detectable_diameter_mm`` null) makes a would-be negative study indeterminate.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "1"

# The series class (screener.types.SequenceClass value) -> the benchmark's contrast name.
BENCHMARK_CONTRAST = {"T1": "T1", "T1c": "T1", "T2": "T2", "FLAIR": "FLAIR", "PD": "PD", "SWI": "SWI"}

SCOPE = ("A negative result covers visible structural signal-intensity change only; it says "
         "nothing about function, microscopic, molecular or systemic disease")
CLINICAL = "Clinical correlation required."


@dataclass(frozen=True)
class BenchmarkCell:
    """One benchmark cell: lesions of one diameter, kind and contrast at one slice thickness."""

    diameter_mm: float
    slice_thickness_mm: float
    kind: str
    contrast: str
    n: int
    detected: int

    def __post_init__(self) -> None:
        if self.n < 0 or not 0 <= self.detected <= self.n:
            raise ValueError(f"benchmark cell needs 0 <= detected <= n, got {self.detected}/{self.n}")
        if self.diameter_mm <= 0 or self.slice_thickness_mm <= 0:
            raise ValueError("benchmark cell sizes must be positive")


@dataclass(frozen=True)
class Benchmark:
    """The parsed benchmark table."""

    cells: tuple[BenchmarkCell, ...]
    model: dict[str, Any]
    source: str = ""

    @property
    def thicknesses(self) -> list[float]:
        return sorted({c.slice_thickness_mm for c in self.cells})

    @property
    def contrasts(self) -> list[str]:
        return sorted({c.contrast for c in self.cells if c.n > 0})


def benchmark_contrast(sequence: str | None) -> str | None:
    """The benchmark contrast whose cells speak for a series of this class (a SequenceClass or
    its value; None: none do)."""
    return BENCHMARK_CONTRAST.get(sequence)  # type: ignore[arg-type]


def load_benchmark(path: str | Path) -> Benchmark:
    """Read and validate benchmark.json (raises ValueError on a malformed table)."""
    p = Path(path)
    data = json.loads(p.read_text(encoding="utf-8"))
    if str(data.get("schema_version")) != SCHEMA_VERSION:
        raise ValueError(f"{p}: unsupported benchmark schema {data.get('schema_version')!r}")
    try:
        cells = tuple(
            BenchmarkCell(diameter_mm=float(c["diameter_mm"]),
                          slice_thickness_mm=float(c["slice_thickness_mm"]),
                          kind=str(c.get("kind", "")), contrast=str(c.get("contrast", "")),
                          n=int(c["n"]), detected=int(c["detected"]))
            for c in data["cells"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{p}: malformed benchmark cell ({exc})") from exc
    if not cells:
        raise ValueError(f"{p}: benchmark has no cells")
    return Benchmark(cells=cells, model=dict(data.get("model") or {}), source=str(p))


def sensitivity_table(bench: Benchmark, thickness: float, aggregate: str = "pooled",
                      tolerance: float = 0.05,
                      contrast: str | None = None) -> dict[float, tuple[float, int]]:
    """Per diameter at one benchmarked thickness: (sensitivity, n), of one contrast if given."""
    if aggregate not in ("pooled", "worst_kind"):
        raise ValueError(f"unknown resolution_aggregate {aggregate!r}")
    per_kind: dict[tuple[float, str], list[int]] = defaultdict(lambda: [0, 0])
    for c in bench.cells:
        if (abs(c.slice_thickness_mm - thickness) <= tolerance and c.n > 0
                and (contrast is None or c.contrast == contrast)):
            key = (c.diameter_mm, c.kind if aggregate == "worst_kind" else "")
            per_kind[key][0] += c.detected
            per_kind[key][1] += c.n
    table: dict[float, tuple[float, int]] = {}
    for (diameter, _), (detected, n) in per_kind.items():
        # pooled: one entry per diameter; worst_kind: keep the weakest kind (and its n).
        if diameter not in table or detected / n < table[diameter][0]:
            table[diameter] = (detected / n, n)
    return dict(sorted(table.items()))


def resolution_limits(
    voxel_mm: Sequence[float],
    slice_thickness_mm: float | None,
    slice_gap_mm: float | None,
    bench: Benchmark | None,
    min_sensitivity: float = 0.90,
    aggregate: str = "pooled",
    tolerance: float = 0.05,
    min_n: int = 10,
    contrast: str | None = None,
    match_contrast: bool = False,
    missing_reason: str | None = None,
) -> dict[str, Any]:
    """The ``resolution_limits`` block of report.json for one series geometry.

    Args:
        voxel_mm: voxel size along the volume axes (k = slice axis; its value is the spacing).
        slice_thickness_mm: SliceThickness (None: taken as the slice spacing).
        slice_gap_mm: gap between slices (None or <= 0: contiguous).
        bench: the benchmark table, or None when the weights ship none (-> no claim).
        min_sensitivity: sensitivity a diameter must reach (``decide.min_size_sensitivity``).
        aggregate: ``pooled`` | ``worst_kind``.
        tolerance: mm within which a benchmark thickness counts as equal.
        min_n: benchmark lesions of the claimed diameter or more (at that thickness) a claim
            needs (``decide.min_size_n``).
        contrast: the benchmark contrast of the series (``benchmark_contrast``).
        match_contrast: count only that contrast's cells (``decide.resolution_contrast:
            matched``); no claim when ``contrast`` is None or the table holds none of it.
        missing_reason: why ``bench`` is None, when not because the weights ship none.

    Returns:
        voxel_mm, slice_thickness_mm, slice_gap_mm, min_detectable_diameter_mm (None = no
        claim), sensitivity_at_min_diameter, benchmark_slice_thickness_mm, benchmark_n,
        benchmark_contrast (None: pooled over contrasts), no_claim_reason, statement.
    """
    vox = [float(v) for v in voxel_mm]
    thickness = float(slice_thickness_mm) if slice_thickness_mm is not None else vox[2]
    gap = float(slice_gap_mm) if slice_gap_mm is not None else max(vox[2] - thickness, 0.0)
    through = max(thickness, vox[2], thickness + max(gap, 0.0))
    out: dict[str, Any] = {
        "voxel_mm": vox, "slice_thickness_mm": thickness, "slice_gap_mm": gap,
        "min_detectable_diameter_mm": None, "sensitivity_at_min_diameter": None,
        "benchmark_slice_thickness_mm": None, "benchmark_n": None,
        "benchmark_contrast": contrast if match_contrast else None, "no_claim_reason": None,
    }
    reason = None
    if bench is None:
        reason = missing_reason or "no benchmark table shipped with the model"
    elif match_contrast and contrast is None:
        reason = "the series' contrast has no benchmark counterpart"
    elif match_contrast and contrast not in bench.contrasts:
        reason = f"the benchmark holds no {contrast} lesions"
    else:
        rows = [t for t in bench.thicknesses if t >= through - tolerance]
        if not rows:
            reason = (f"slice thickness {through:.1f} mm is beyond the thickest benchmarked "
                      f"({max(bench.thicknesses):.1f} mm)")
        else:
            t_b = min(rows)
            table = sensitivity_table(bench, t_b, aggregate, tolerance,
                                      contrast if match_contrast else None)
            of = f" of {contrast} images" if match_contrast else ""
            claim, n_at_least, short = None, 0, False
            for diameter in sorted(table, reverse=True):  # walk down while all larger pass
                if table[diameter][0] < min_sensitivity:
                    break
                n_at_least += table[diameter][1]
                if n_at_least >= min_n:
                    claim = diameter
                else:
                    short = True
            out["benchmark_slice_thickness_mm"] = t_b
            if claim is None:
                reason = (f"no benchmarked diameter reaches {min_sensitivity:.0%} sensitivity "
                          f"at {t_b:g} mm slices{of}"
                          + (f" on at least {min_n} lesions of that size or more" if short else ""))
            else:
                out.update(min_detectable_diameter_mm=claim,
                           sensitivity_at_min_diameter=round(table[claim][0], 4),
                           benchmark_n=table[claim][1])
    out["no_claim_reason"] = reason
    out["statement"] = statement(out)
    return out


def statement(limits: dict[str, Any]) -> str:
    """The sentence every report carries about what a negative result covers."""
    d = limits.get("min_detectable_diameter_mm")
    geometry = (f"Voxel {' x '.join(f'{v:.2g}' for v in limits['voxel_mm'])} mm, slice "
                f"thickness {limits['slice_thickness_mm']:.2g} mm, gap {limits['slice_gap_mm']:.2g} mm.")
    if d is None:
        return (f"{geometry} No lesion-size claim can be made "
                f"({limits.get('no_claim_reason') or 'not benchmarked'}). {SCOPE}. {CLINICAL}")
    kind = f"{limits['benchmark_contrast']} " if limits.get("benchmark_contrast") else ""
    return (f"{geometry} {SCOPE}, nor lesions smaller than about {d:g} mm in diameter "
            f"(smallest size detected with {limits['sensitivity_at_min_diameter']:.0%} sensitivity "
            f"on synthetic {kind}lesions at {limits['benchmark_slice_thickness_mm']:g} mm slices, "
            f"n = {limits['benchmark_n']}). {CLINICAL}")


def best_limits(per_series: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Of several used series' limits, the one with the smallest size claim (ties: thinner)."""
    claims = [x for x in per_series if x.get("min_detectable_diameter_mm") is not None]
    pool = claims or list(per_series)
    if not pool:
        return None
    return min(pool, key=lambda x: (x.get("min_detectable_diameter_mm") or float("inf"),
                                    x["slice_thickness_mm"]))
