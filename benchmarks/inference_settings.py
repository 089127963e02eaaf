"""Inference settings compared on held-out synthetic calibration heads, each against its peer.

Runs the shipped weights over the first N heads of the calibration seed space (label maps held
out of training; the same space `synth_eval calibrate` fits the operating point on, never the
benchmark's or any real case) and prints, for each window setting (sliding-window tile and
overlap, or one window over the whole head box; with or without the left-right mirror average;
with or without judging the brain's hull, '+hull6+open1'; with robust local means, '+excl3'; with
the outlier term off the brain's outermost voxels, '+rim1'):
- brain-mask Dice against the generator's truth and predict() seconds per head;
- for the first window setting, what the fused map misses: hits per lesion kind and per
  contrast-strength bin (synth_eval.lesion_contrast_sd), and of the missed lesions how many the
  learned channel does not see at all (max < 0.05) or the brain mask does not cover (< 60 %),
  and which tissue class the network calls the voxels of missed and of hit lesions;
- for the first window, the fused findings' mean lesion Dice on the lesion heads and median
  volume on the lesion-free heads; with --grow LOW ..., the same for findings grown by hysteresis
  (seeds at the voxel threshold, grown into connected voxels >= LOW);
- for the fused map (learned channel + outlier statistics) and the learned channel alone:
  lesions hit, false-finding volume on lesion-free heads, and for each study-score volume scale
  the AUROC of lesion-hit-gated scores (a lesion study whose findings miss the lesion scores 0,
  as in calibration) with the sensitivity at 90 % specificity.
Settings chosen from this table go into configs/default.yaml (model.roi_size, model.sw_overlap,
model.tta_flip, model.hull_closing_mm, model.hull_opening_vox, model.use_outlier,
decide.score_volume_scale_ml) before calibrating.

    .venv/bin/python benchmarks/inference_settings.py --n 60
    .venv/bin/python benchmarks/inference_settings.py --n 60 --weights /tmp/candidate  # a checkpoint
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import yaml


def grid_offsets(phases: int, voxel_mm: float, default: tuple[tuple[float, ...], ...]
                 ) -> tuple[tuple[float, ...], ...]:
    """'+phaseK': K working grids moved by k/K of a voxel along the diagonal (k = 0..K-1);
    0 keeps the config's offsets."""
    if phases <= 0:
        return default
    return tuple((k * voxel_mm / phases,) * 3 for k in range(phases))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60, help="calibration heads (3 of 4 with a lesion)")
    ap.add_argument("--seed", type=int, default=1, help="calibration seed (as synth_eval calibrate)")
    ap.add_argument("--windows", nargs="+", default=["64x80x64@0.5", "box"],
                    help="TILE@OVERLAP (voxels of the 2 mm grid) or 'box' (one window); a "
                         "'+flip' suffix averages over the left-right mirror image (model.tta_flip), "
                         "'+hullR' judges the CSF in the brain's hull closed with R mm "
                         "(model.hull_closing_mm), '+openK' keeps abnormal regions outside the brain only "
                         "where they survive an opening by a (2K+1)^3 cube (model.hull_opening_vox), "
                         "'+exclK' leaves voxels more than K robust SD from their tissue's brain-wide "
                         "median out of the outlier term's local means (model.outlier.exclude_beyond_sd), "
                         "'+rimK' keeps the outlier term off the judged region's outermost K voxels "
                         "(model.outlier_rim_vox), '+rimopenK' except where its region survives an "
                         "opening by a (2K+1)^3 cube (model.outlier_rim_opening_vox), '+bf16' runs "
                         "the network in bfloat16 (model.cpu_bf16: on), '+phaseK' averages K predictions on "
                         "working grids moved by k/K of a voxel along the diagonal, k = 0..K-1 "
                         "(model.grid_offsets_mm)")
    ap.add_argument("--scales", type=float, nargs="+", default=[0.05, 0.5, 2.0])
    ap.add_argument("--grow", type=float, nargs="*", default=[],
                    help="hysteresis low thresholds to compare (default: none)")
    ap.add_argument("--measured-min", type=float, default=None, metavar="MM",
                    help="keep only the lesion heads whose lesion measures >= MM "
                         "(synth_eval.measured_diameter_mm; default: all, drawn at >= 10 mm)")
    ap.add_argument("--learned-offsets", type=float, nargs="*", default=[], metavar="D",
                    help="for the first window, also score the fused map with the learned "
                         "channel's logit raised by D (its decision threshold lowered: p=0.5 at "
                         "sigmoid(-D)), the outlier term unchanged (default: none)")
    ap.add_argument("--weights", default=None,
                    help="weights bundle directory to run instead of the config's (a candidate "
                         "exported with `screener train --export DIR`)")
    ap.add_argument("--ensemble", nargs="+", default=[], metavar="DIR",
                    help="further weights bundles whose networks join the measured one: the "
                         "class probabilities are the mean of the members' softmax (EnsembleNet); "
                         "everything else (outlier fusion, decisions) as the measured bundle's")
    ap.add_argument("--cases-csv", default=None, metavar="PATH",
                    help="also write one row per head for the first window (head, lesion, kind, "
                         "image contrast, fused and learned hit, hit-gated study score at 0.5 ml), "
                         "so two weights judged on the same heads can be compared head by head")
    ap.add_argument("--synth", nargs="*", default=[], metavar="KEY=VALUE",
                    help="render the heads with these SynthConfig fields replaced (YAML values), "
                         "e.g. label_supersample=2; the draws stay the same heads otherwise")
    ap.add_argument("--threads", type=int, default=2,
                    help="torch threads (1 when two weights are measured side by side on 2 cores)")
    args = ap.parse_args()

    from finding_verifier import _figures  # benchmarks/ is the script's own directory
    from screener.decide import analyse_series
    from screener.infer import assessment_mask, predict
    from screener.model import synth_eval
    from screener.model.anatomy import N_CLASSES, Tissue
    from screener.types import SeriesInfo, SeriesVolume

    _, dc, base = synth_eval.load_for_measuring(args.weights, threads=args.threads)
    if args.ensemble:
        members = [synth_eval.load_for_measuring(d, threads=args.threads)[2] for d in args.ensemble]
        base = dataclasses.replace(base, net=EnsembleNet([base.net, *(m.net for m in members)]))
        print(f"ensemble: {base.name} {base.version} + "
              + ", ".join(f"{m.name} {m.version} ({d})" for m, d in zip(members, args.ensemble)))
    overrides = {}
    for item in args.synth:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    gen, run_seed = synth_eval._generator(base.metadata, overrides=overrides)
    if overrides:
        print(f"heads rendered with {overrides}")
    samples = list(synth_eval.calibration_heads(gen, run_seed, args.n, args.seed, args.measured_min))
    what = "drawn at >= 10 mm" if args.measured_min is None else f"measuring >= {args.measured_min:g} mm"
    print(f"weights {base.name} {base.version}: {len(samples)} calibration heads "
          f"({sum(spec.lesion for spec, _ in samples)} with a lesion {what})")
    for window in args.windows:
        parts = window.split("+")
        spec_w, flip = parts[0], "flip" in parts[1:]
        hull_mm = next((float(p[4:]) for p in parts[1:] if p.startswith("hull")), 0.0)
        opening = next((int(p[4:]) for p in parts[1:] if p.startswith("open")), 0)
        rim = next((int(p[3:]) for p in parts[1:] if p.startswith("rim") and p[3:].isdigit()),
                   base.config.outlier_rim_vox)
        rim_open = next((int(p[7:]) for p in parts[1:] if p.startswith("rimopen")),
                        base.config.outlier_rim_opening_vox)
        exclude = next((float(p[4:]) for p in parts[1:] if p.startswith("excl")),
                       base.config.outlier.exclude_beyond_sd)
        phases = next((int(p[5:]) for p in parts[1:] if p.startswith("phase")), 0)
        if spec_w == "box":
            roi, overlap = None, base.config.sw_overlap
        else:
            tile, ov = spec_w.split("@")
            roi, overlap = tuple(int(v) for v in tile.split("x")), float(ov)
        model = dataclasses.replace(base, config=dataclasses.replace(
            base.config, roi_size=roi, sw_overlap=overlap, tta_flip=flip,
            hull_closing_mm=hull_mm, hull_opening_vox=opening, outlier_rim_vox=rim,
            outlier_rim_opening_vox=rim_open,
            cpu_bf16="on" if "bf16" in parts[1:] else base.config.cpu_bf16,
            grid_offsets_mm=grid_offsets(phases, base.voxel_mm, base.config.grid_offsets_mm),
            outlier=dataclasses.replace(base.config.outlier, exclude_beyond_sd=exclude)))
        dice, seconds = [], 0.0
        offsets = args.learned_offsets if window == args.windows[0] else []
        variants = ["fused", "learned"] + [f"fused, learned logit +{d:g}" for d in offsets]
        rows: dict[str, list[tuple[bool, bool, list[tuple[float, float]]]]] = {v: [] for v in variants}
        false_ml: dict[str, list[float]] = {v: [] for v in variants}
        # kind, contrast strength, learned max, brain cover, share of the lesion per predicted
        # tissue class, image contrast (T1, T2, ...)
        lesions: list[tuple[str, float | None, float, float, np.ndarray, str]] = []
        grown: dict[float, tuple[list[float], list[float]]] = {
            low: ([], []) for low in [dc.voxel_threshold, *args.grow]}  # lesion Dice, false ml
        for spec, sample in samples:
            img = sample.image[0].numpy()
            truth = sample.target.numpy()
            les = truth == int(Tissue.LESION)
            t0 = time.perf_counter()
            pred = predict(SeriesVolume(data=img, affine=sample.affine,
                                        info=SeriesInfo("synthetic", "synthetic")), model,
                           diagnostics=True)
            seconds += time.perf_counter() - t0
            brain_true = (truth != int(Tissue.NONBRAIN)) & (truth != int(Tissue.CSF))
            seen = pred.brain_prob >= dc.brain_threshold
            dice.append(2 * (brain_true & seen).sum() / (brain_true.sum() + seen.sum()))
            brain = assessment_mask(pred, dc.brain_threshold)  # where findings may lie
            voxel_ml = abs(float(np.linalg.det(sample.affine[:3, :3]))) / 1000.0
            maps = [("fused", pred.lesion_prob), ("learned", pred.learned_prob)]
            maps += [(name, _offset_fused(pred.lesion_prob, pred.learned_prob, d))
                     for name, d in zip(variants[2:], offsets)]
            for name, prob in maps:
                a = analyse_series(prob, brain, img, sample.affine, "s", dc)
                found = a.labels > 0
                hit = bool((found & les).any())
                rows[name].append((spec.lesion, hit, [(f.probability, f.volume_ml) for f in a.findings]))
                if not spec.lesion:
                    false_ml[name].append(float(found.sum()) * voxel_ml)
            if window == args.windows[0]:
                for low, (dices, vols) in grown.items():
                    f = _grow(pred.lesion_prob, brain, low, dc)
                    if spec.lesion:
                        dices.append(2 * (f & les).sum() / (f.sum() + les.sum()))
                    else:
                        vols.append(float(f.sum()) * voxel_ml)
            if spec.lesion:
                lesions.append((str(spec.kind), synth_eval.lesion_contrast_sd(img, truth),
                                float(pred.learned_prob[les].max()), float(brain[les].mean()),
                                np.bincount(pred.tissue[les].ravel(), minlength=N_CLASSES) / les.sum(),
                                str(spec.contrast)))
        if args.cases_csv and window == args.windows[0]:
            _write_cases(args.cases_csv, samples, rows)
        print(f"\nwindow {window}: brain Dice {np.mean(dice):.3f}, predict {seconds / len(samples):.2f} s/head")
        if window == args.windows[0]:
            for low, (dices, vols) in grown.items():
                what = "no growth" if low == dc.voxel_threshold else f"grown to p >= {low:g}"
                print(f"  fused findings, {what}: lesion Dice {np.mean(dices):.3f} "
                      f"(n={len(dices)}), lesion-free heads median {np.median(vols):.1f} ml "
                      f"(n={len(vols)})")
        if window == args.windows[0]:
            _print_misses(lesions, [r[1] for r in rows["fused"] if r[0]])
        for name, res in rows.items():
            n_les = sum(r[0] for r in res)
            hits = sum(r[1] for r in res if r[0])
            print(f"  {name:8s} lesions hit {hits}/{n_les}, false findings on lesion-free heads "
                  f"median {np.median(false_ml[name]):.1f} ml (n={len(false_ml[name])})")
            lesion = np.array([r[0] for r in res])
            for scale in args.scales:
                auc, sens = _figures(np.array([_gated_score(r, scale) for r in res]), lesion)
                print(f"    score_volume_scale_ml {scale:5}: hit-gated AUROC {auc:.3f}, "
                      f"sensitivity at 90 % specificity {sens:.2f}")
    return 0


class EnsembleNet:
    """Several networks as one: log of the mean of their class softmax, so that predict's own
    softmax returns exactly that mean within a window (sliding-window blending then mixes
    log-probabilities across overlapping windows, as it mixes one network's logits)."""

    def __init__(self, nets: list) -> None:
        self.nets = nets

    def __call__(self, t):
        import torch

        p = torch.stack([torch.softmax(n(t).float(), 1) for n in self.nets]).mean(0)
        return torch.log(p.clamp_min(1e-12))


def _write_cases(path: str, samples, rows) -> None:
    """One row per head: the fused and learned hits and 0.5 ml study scores (hit-gated, as the
    AUROC above), at full precision: rounded to 6 decimals, 110 of 393 heads tied at 1.000000 and
    an AUROC from the file read 0.612 where the same scores unrounded give 0.617."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["head", "lesion", "kind", "contrast", "fused_hit", "learned_hit",
                    "fused_score_0.5ml", "learned_score_0.5ml"])
        for i, (spec, _) in enumerate(samples):
            fused, learned = rows["fused"][i], rows["learned"][i]
            score = [_gated_score(r, 0.5) for r in (fused, learned)]
            w.writerow([i, int(spec.lesion), str(spec.kind) if spec.lesion else "",
                        str(spec.contrast), int(fused[1]), int(learned[1]),
                        repr(float(score[0])), repr(float(score[1]))])


def _offset_fused(fused: np.ndarray, learned: np.ndarray, offset: float) -> np.ndarray:
    """The fused map 1 - (1 - l)(1 - q) rebuilt with the learned probability l's logit raised by
    `offset` (infer.raise_logit, as predict does with model.learned_logit_offset); the outlier
    term q is recovered from the two maps (where l is ~1, so is the map)."""
    from screener.infer import raise_logit

    l = np.clip(learned.astype(np.float64), 1e-7, 1 - 1e-7)
    q = np.clip(1.0 - (1.0 - fused) / (1.0 - l), 0.0, 1.0)
    return (1.0 - (1.0 - raise_logit(learned, offset)) * (1.0 - q)).astype(np.float32)


def _grow(prob, brain, low: float, dc) -> np.ndarray:
    """Finding voxels grown by hysteresis: connected components of prob >= low in the brain
    (decide's connectivity) that hold a voxel >= the voxel threshold."""
    from scipy import ndimage

    lab, _ = ndimage.label((prob >= low) & brain,
                           ndimage.generate_binary_structure(3, dc.connectivity))
    keep = np.unique(lab[(prob >= dc.voxel_threshold) & brain])
    return np.isin(lab, keep[keep > 0])


def _print_misses(lesions: list[tuple[str, float | None, float, float, np.ndarray, str]],
                  hits: list[bool]) -> None:
    """Where the fused map's misses fall (kind, contrast strength, image contrast) and what
    they look like, including which tissue the network calls their voxels (argmax class)."""
    from collections import Counter

    from screener.model.anatomy import Tissue

    from screener.model.synth_eval import contrast_bin, contrast_bin_label

    def band(c: float | None) -> str:
        return "n/a" if c is None else contrast_bin_label(contrast_bin(c))

    for title, key in (("kind", lambda x: x[0]), ("contrast", lambda x: band(x[1])),
                       ("image contrast", lambda x: x[5])):
        n, k = Counter(key(x) for x in lesions), Counter(key(x) for x, h in zip(lesions, hits) if h)
        print(f"  fused hits by {title}: " + ", ".join(f"{g} {k[g]}/{n[g]}" for g in sorted(n)))
    missed = [x for x, h in zip(lesions, hits) if not h]
    print(f"  of {len(missed)} missed lesions: learned channel max < 0.05 in "
          f"{sum(x[2] < 0.05 for x in missed)}, brain mask covering < 60 % in "
          f"{sum(x[3] < 0.6 for x in missed)}")
    for title, group in (("missed", missed), ("hit", [x for x, h in zip(lesions, hits) if h])):
        if group:
            share = np.mean([x[4] for x in group], axis=0)
            print(f"  {title} lesions' voxels called (mean share, n={len(group)}): "
                  + ", ".join(f"{t.name.lower()} {share[int(t)]:.2f}" for t in Tissue))


def _gated_score(row: tuple[bool, bool, list[tuple[float, float]]], scale: float) -> float:
    """A head's study score for the AUROC: a lesion head whose lesion no finding touches scores 0
    whatever the map painted elsewhere; a lesion-free head keeps its false findings' score."""
    lesion, hit, findings = row
    return _study_score(findings, scale) if hit or not lesion else 0.0


def _study_score(findings: list[tuple[float, float]], scale: float) -> float:
    """decide.analyse_series' study score (max over findings) for another volume scale."""
    from screener.decide import finding_score

    return max((finding_score(p, v, scale) for p, v in findings), default=0.0)


if __name__ == "__main__":
    raise SystemExit(main())
