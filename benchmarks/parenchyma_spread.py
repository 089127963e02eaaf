"""How heterogeneous brain parenchyma is on real FLAIR against the generator's FLAIR heads.

A development measurement (no threshold is fitted to it). Intensities are shifted so the
parenchyma's 0.5th percentile is 0; the figure is the parenchyma's IQR / median, plus for the
real cases where the expert-masked lesions sit: (lesion median - WM median) / WM median.
- Real: the FLAIR of every masked case in ../shared/realdata-dev/cases.csv; parenchyma = voxels
  the shipped model calls white or grey matter inside its brain mask, outside the expert mask.
- Synthetic: lesion-free FLAIR heads from the held-out label maps at 2 mm slices; parenchyma =
  the generator's own white and grey matter. Printed as drawn, without the bias field, and
  without it with grey matter at --gm instead of the template's (the template's other draws
  kept), to show where the spread comes from.

    .venv/bin/python benchmarks/parenchyma_spread.py --n 8     # about 2 minutes
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
from pathlib import Path

import numpy as np


def spread(values: np.ndarray) -> float:
    x = values - np.quantile(values, 0.005)
    q25, q50, q75 = np.quantile(x, [0.25, 0.5, 0.75])
    return float((q75 - q25) / q50)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8, help="synthetic heads per variant")
    ap.add_argument("--gm", type=float, default=0.47, help="FLAIR grey-matter mean of the third variant")
    ap.add_argument("--cases", default="../shared/realdata-dev/cases.csv")
    args = ap.parse_args()

    import nibabel as nib
    import torch
    from nibabel.processing import resample_from_to

    from screener.infer import predict
    from screener.model import synth as synth_mod
    from screener.model.anatomy import Tissue, load_all
    from screener.model.synth import SampleSpec, SynthConfig, SynthGenerator
    from screener.pipeline import load_model
    from screener.types import SeriesInfo, SeriesVolume

    cases = Path(args.cases)
    if cases.exists():
        model = load_model()
        for row in csv.DictReader(open(cases, encoding="utf-8")):
            if not row["mask"]:
                continue
            img = nib.load(cases.parent / row["inputs"].split(";")[0])
            les = resample_from_to(nib.load(cases.parent / row["mask"]), img, order=0).get_fdata() > 0
            data = img.get_fdata().astype(np.float32)
            p = predict(SeriesVolume(data=data, affine=img.affine, info=SeriesInfo("s", "s")),
                        model, diagnostics=True)
            paren = (((p.tissue == int(Tissue.WM)) | (p.tissue == int(Tissue.GM))) & ~les
                     & (p.brain_prob >= 0.5))
            lo = np.quantile(data[paren], 0.005)
            wm = np.median(data[(p.tissue == int(Tissue.WM)) & paren]) - lo
            gm = np.median(data[(p.tissue == int(Tissue.GM)) & paren]) - lo
            lesion = np.median(data[les]) - lo
            print(f"real {row['study_id']:14s} parenchyma IQR/median {spread(data[paren]):.2f}; "
                  f"(GM - WM)/WM {(gm - wm) / wm:.2f}; (lesion - WM)/WM {(lesion - wm) / wm:.2f}")
    else:
        print(f"{cases} not found: real cases skipped")

    torch.set_num_threads(2)
    cfg = SynthConfig()
    maps = load_all(cfg.label_maps_dir, cfg.max_label_maps)[17:]  # held out of training
    flair = synth_mod.TEMPLATES["FLAIR"]
    variants = [("as drawn", {}, flair), ("no bias field", {"max_bias": 0.0}, flair),
                (f"no bias field, GM {args.gm:g}", {"max_bias": 0.0}, (flair[0], args.gm, flair[2]))]
    try:
        for name, over, template in variants:
            synth_mod.TEMPLATES["FLAIR"] = template
            gen = SynthGenerator(dataclasses.replace(cfg, **over), maps)
            vals = []
            for seed in range(args.n):
                s = gen.sample(1000 + seed, SampleSpec(lesion=False, contrast="FLAIR",
                                                       slice_thickness_mm=2.0))
                t = s.target.numpy()
                vals.append(spread(s.image[0].numpy()[(t == int(Tissue.WM)) | (t == int(Tissue.GM))]))
            print(f"synthetic FLAIR, {name}: parenchyma IQR/median median {np.median(vals):.2f} "
                  f"({min(vals):.2f}-{max(vals):.2f}, n={len(vals)}); lesion amplitudes 0.07-0.4 "
                  f"are {0.07 / template[0]:.2f}-{0.4 / template[0]:.2f} x the WM template mean")
    finally:
        synth_mod.TEMPLATES["FLAIR"] = flair
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
