"""How visible are the benchmark's lesions against the tissue they replaced, and which are found?

`synth_eval.lesion_contrast_sd` compares a lesion with the white and grey matter around it, so
its unit (the spread of a grey-white mixture) includes the grey-white contrast itself: a white
matter lesion with grey matter's signal can score below 1 SD and still be plain to see. This
script redraws each benchmark head twice with the same seed, once as drawn and once with the
lesions rendered but not painted (every random number drawn the same, so noise, bias and
slices are identical), and measures the lesion against what that tissue looked like:

    replaced-tissue CNR = |median(lesion image) - median(same voxels without the lesion)|
                          / robust SD of that tissue within 4 mm of the lesion (without it)

the tissue being the class the lesion mostly replaced (white or grey matter). It then joins
each head with the benchmark's per-case result (eval/synthetic/synthetic_cases.csv, same order,
same seed) and prints hits of lesions measuring >= 10 mm per CNR band, by kind.
No network runs; the hits are the shipped weights' as recorded by the benchmark.

    .venv/bin/python benchmarks/lesion_visibility.py --n 200 --seed 2 --out /tmp/vis.csv  # ~10 CPU-min
    .venv/bin/python benchmarks/lesion_visibility.py --rows /tmp/vis.csv  # summary again
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

BANDS = (0.0, 0.5, 1.0, 2.0, 4.0, float("inf"))


def replaced_cnr(lesioned: np.ndarray, clean: np.ndarray, mask: np.ndarray, tissue: np.ndarray,
                 voxel_mm: float = 2.0) -> float | None:
    """The lesion's change against the tissue it mostly replaced, within the shell
    synth_eval.lesion_contrast_sd uses (SHELL_MM); None without enough of that tissue."""
    from scipy import ndimage

    from screener.metrics import robust_sd
    from screener.model.anatomy import Tissue
    from screener.model.synth_eval import SHELL_MM

    host = tissue[mask]
    cls = int(Tissue.WM) if (host == int(Tissue.WM)).sum() >= (host == int(Tissue.GM)).sum() \
        else int(Tissue.GM)
    near = ndimage.distance_transform_edt(~mask, sampling=voxel_mm) <= SHELL_MM
    ref = clean[near & ~mask & (tissue == cls)]
    if ref.size < 10:
        return None
    return abs(float(np.median(lesioned[mask])) - float(np.median(clean[mask]))) / robust_sd(ref)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--cases-csv", default="eval/synthetic/synthetic_cases.csv")
    ap.add_argument("--min-mm", type=float, default=10.0)
    ap.add_argument("--out", default=None, help="write per-lesion rows here (CSV)")
    ap.add_argument("--rows", default=None, help="summarise per-lesion rows written by --out "
                                                 "instead of redrawing the heads")
    args = ap.parse_args()
    if args.rows:
        rows = list(csv.DictReader(Path(args.rows).open()))
        summarise([{**r, "measured_mm": float(r["measured_mm"]), "mixture_sd": float(r["mixture_sd"]),
                    "replaced_cnr": float(r["replaced_cnr"]) if r["replaced_cnr"] else None,
                    "hit": r["hit"] == "True"} for r in rows], args.min_mm)
        return 0

    import screener.model.lesions as lesion_lib
    from screener.model import synth_eval

    _, _, model = synth_eval.load_for_measuring()  # the configured weights' generator settings
    gen, run_seed = synth_eval._generator(model.metadata)
    rows = list(csv.DictReader(Path(args.cases_csv).open()))
    real_render = lesion_lib.render_lesions
    seen: dict[str, np.ndarray] = {}

    def no_paint(img, tissue, *a, **k):  # same random draws, nothing painted
        seen["tissue"] = tissue.numpy().copy()
        _, mask = real_render(img, tissue, *a, **k)
        return img.clone(), mask

    out_rows = []
    k = 0
    for s, spec in synth_eval.cases(args.n, args.seed, "bench", run_seed):
        drawn = gen.sample(s, spec)
        mask = drawn.lesion_mask.numpy()
        if spec.lesion and not mask.any():
            continue  # skipped by the benchmark too
        row = rows[k]
        k += 1
        if not spec.lesion:
            continue
        assert row["kind"] == spec.kind and float(row["drawn_diameter_mm"]) == spec.diameter_mm, row
        lesion_lib.render_lesions = no_paint  # synth calls it through the module
        try:
            clean = gen.sample(s, spec)
        finally:
            lesion_lib.render_lesions = real_render
        cnr = replaced_cnr(drawn.image[0].numpy(), clean.image[0].numpy(), mask, seen["tissue"])
        out_rows.append({"kind": spec.kind, "measured_mm": float(row["measured_diameter_mm"] or 0),
                         "thickness": spec.slice_thickness_mm, "contrast": spec.contrast,
                         "mixture_sd": float(row["contrast_sd"] or "nan"),
                         "replaced_cnr": cnr, "hit": row["hit"] == "True"})
    if k != len(rows):
        raise SystemExit(f"joined {k} heads but the cases CSV has {len(rows)} rows")
    if args.out:
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(out_rows[0]))
            w.writeheader()
            w.writerows(out_rows)
    summarise(out_rows, args.min_mm)
    return 0


def summarise(out_rows: list[dict], min_mm: float) -> None:
    big = [r for r in out_rows if r["measured_mm"] >= min_mm and r["replaced_cnr"] is not None]
    print(f"{len(out_rows)} lesion heads; {len(big)} lesions measuring >= {min_mm:g} mm")
    for key in ("contrast", "kind"):
        vals = sorted({r[key] for r in big})
        print(f"by {key}: " + ", ".join(
            f"{v} {sum(r['hit'] for r in big if r[key] == v)}/{sum(r[key] == v for r in big)}"
            for v in vals))
    print("replaced-tissue CNR band: found / n (by kind)")
    for lo, hi in zip(BANDS, BANDS[1:]):
        band = [r for r in big if lo <= r["replaced_cnr"] < hi]
        kinds = sorted({r["kind"] for r in band})
        by = ", ".join(f"{kd} {sum(r['hit'] for r in band if r['kind'] == kd)}/"
                       f"{sum(r['kind'] == kd for r in band)}" for kd in kinds)
        print(f"  {lo:g}-{hi:g}: {sum(r['hit'] for r in band)}/{len(band)}  ({by})")
    mis = [r for r in big if not r["hit"]]
    print("misses (kind, mm, contrast, mixture SD, replaced CNR):")
    for r in sorted(mis, key=lambda r: r["replaced_cnr"]):
        print(f"  {r['kind']:13s} {r['measured_mm']:5.1f} {r['contrast']:6s} "
              f"{r['mixture_sd']:5.2f} {r['replaced_cnr']:5.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
