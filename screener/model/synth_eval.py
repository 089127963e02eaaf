"""Held-out synthetic benchmark and calibration of the model.

Both draw synthetic heads from the label maps held out of training (anatomy never seen by the
network) with seeds from their own seed spaces ("calib", "bench"), so neither overlaps the
training stream nor each other. Calibration fits the operating point and the score ->
P(abnormal) map (screener.calibrate); the benchmark then measures, with that operating point
fixed, study-level sensitivity per lesion diameter x slice thickness x kind x contrast and
specificity on lesion-free heads. Its table ships with the weights and feeds the report's
resolution limits.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from screener.config import load_config

log = logging.getLogger(__name__)

DIAMETERS_MM = (3.0, 5.0, 10.0, 20.0, 40.0)
THICKNESSES_MM = (1.0, 3.0, 5.0)
KINDS = ("oedema", "mass", "haemorrhage", "demyelination", "infarct")
CONTRASTS = ("T1", "T2", "FLAIR", "PD", "SWI")


@dataclass
class CaseResult:
    lesion: bool
    kind: str | None
    diameter_mm: float | None  # the generator's size parameter the lesion was drawn with
    slice_thickness_mm: float
    contrast: str
    score: float
    hit: bool  # a finding overlaps the true lesion
    contrast_sd: float | None = None  # lesion_contrast_sd of the drawn lesion (None: no lesion)
    # What the lesion measures: its mask's maximum diameter in world mm (decide.max_diameter_mm,
    # as findings are measured). The benchmark's size classes and the calibration's claimed
    # sizes use this, not diameter_mm: on the benchmark's heads a wedge infarct drawn at 10 mm
    # measures about 8 mm (median), a mass drawn at 20 mm, with its oedema, about 34 mm.
    measured_diameter_mm: float | None = None


def measured_diameter_mm(lesion_mask: np.ndarray, affine: np.ndarray) -> float | None:
    """Maximum diameter (world mm) of a drawn lesion mask, None when it is empty."""
    from screener.decide import max_diameter_mm

    idx = np.argwhere(np.asarray(lesion_mask, dtype=bool))
    return float(max_diameter_mm(idx, affine)) if len(idx) else None


def size_class_mm(measured_mm: float | None) -> float | None:
    """The benchmark size class of a lesion measuring `measured_mm`: the largest DIAMETERS_MM
    value not above it (the class [d_i, d_i+1)); None below the smallest class or unmeasured."""
    if measured_mm is None:
        return None
    below = [d for d in DIAMETERS_MM if d <= measured_mm + 1e-9]
    return max(below) if below else None


def load_for_measuring(weights: str | None = None, threads: int = 2) -> tuple[dict[str, Any], Any, Any]:
    """(config, decide config, model) as the screen uses them, with another weights bundle when
    `weights` is given (a candidate from `screener train --export DIR`); for the measuring
    scripts in benchmarks/."""
    import torch

    from screener.config import load_config
    from screener.decide import decide_config
    from screener.pipeline import load_model

    torch.set_num_threads(threads)
    cfg = load_config()
    if weights:
        cfg["model"] = {**(cfg.get("model") or {}), "weights": weights}
    return cfg, decide_config(cfg), load_model(cfg, "cpu")


def _generator(model_meta: dict[str, Any], training_maps: bool = False,
               overrides: dict[str, Any] | None = None):
    """A generator over the held-out label maps (with `training_maps`: the training ones, for
    diagnostics only), configured as in training, except that lesions keep the appearance
    model every version was measured with (no tissue mimicry), so benchmark and calibration
    figures compare across versions. `overrides` (diagnostics only) replaces SynthConfig fields
    after that."""
    from screener.config import from_mapping
    from screener.model.anatomy import load_all
    from screener.model.synth import SynthConfig, SynthGenerator, held_out_config

    from screener.config import repo_path

    tcfg = model_meta["training"]["config"]
    scfg = held_out_config(from_mapping(SynthConfig, tcfg["synth"]))
    if overrides:
        checked = from_mapping(SynthConfig, overrides)  # unknown keys and wrong types rejected
        scfg = dataclasses.replace(scfg, **{k: getattr(checked, k) for k in overrides})
    maps = load_all(repo_path(scfg.label_maps_dir), scfg.max_label_maps)
    n_train = int(tcfg["train_maps"])
    if training_maps:
        return SynthGenerator(scfg, maps[:n_train]), int(tcfg["seed"])
    held = maps[n_train:]
    if not held:
        raise RuntimeError("no held-out label maps: the benchmark would reuse training anatomy")
    return SynthGenerator(scfg, held), int(tcfg["seed"])


SHELL_MM = 4.0
CONTRAST_SD_BINS = (0.0, 1.0, 2.0, 4.0)  # lower edges of the benchmark's contrast-strength bins


def contrast_bin(contrast_sd: float) -> float:
    """Lower edge of the CONTRAST_SD_BINS bin holding a lesion_contrast_sd value."""
    return max(b for b in CONTRAST_SD_BINS if b <= contrast_sd)


def contrast_bin_label(lower: float) -> str:
    """'1-2 SD' for the bin starting at 1; '>= 4 SD' for the last."""
    above = [b for b in CONTRAST_SD_BINS if b > lower]
    return f"{lower:g}-{above[0]:g} SD" if above else f">= {lower:g} SD"


def lesion_contrast_sd(image: np.ndarray, target: np.ndarray, voxel_mm: float = 2.0) -> float | None:
    """How far a drawn lesion stands out from the brain around it, in units of that brain's spread.

    |median(lesion) - median(shell)| / robust SD(shell), the shell being the white and grey
    matter within SHELL_MM of the lesion (robust SD = 1.4826 MAD). The spread includes the
    normal variation of the neighbourhood (grey-white contrast, bias, noise), which is what a
    lesion has to exceed to be seen. None without lesion voxels or shell.
    """
    from scipy import ndimage

    from screener.model.anatomy import Tissue

    lesion = target == int(Tissue.LESION)
    if not lesion.any():
        return None
    near = ndimage.distance_transform_edt(~lesion, sampling=voxel_mm) <= SHELL_MM
    shell = near & ~lesion & np.isin(target, (int(Tissue.WM), int(Tissue.GM)))
    if shell.sum() < 10:
        return None
    from screener.metrics import robust_sd

    ref = image[shell]
    return abs(float(np.median(image[lesion])) - float(np.median(ref))) / robust_sd(ref)


def run_case(sample: Any, model: Any, config: dict[str, Any]) -> tuple[float, bool]:
    """Screen one synthetic head through the same predict/analyse path as a real series
    (with the weights' finding verifier when the model carries one)."""
    from screener.decide import decide_config
    from screener.infer import predict
    from screener.model.verifier import analyse_prediction
    from screener.types import SeriesInfo, SeriesVolume

    img = sample.image[0].numpy().astype(np.float32)
    vol = SeriesVolume(data=img, affine=sample.affine, info=SeriesInfo("synthetic", "synthetic"))
    verifier = getattr(model, "verifier", None)
    pred = predict(vol, model, diagnostics=verifier is not None)
    analysis, _ = analyse_prediction(pred, img, sample.affine, "synthetic", decide_config(config),
                                     verifier)
    truth = sample.lesion_mask.numpy()
    hit = bool(truth.any() and ((analysis.labels > 0) & truth).any())
    return float(analysis.score), hit


def cases(n: int, seed: int, space: str, run_seed: int, min_diameter_mm: float = 0.0
          ) -> Iterator[tuple[int, Any]]:
    """n case specs cycling through the benchmark grid (diameters >= min_diameter_mm); every
    4th case is lesion-free."""
    from screener.model.synth import SampleSpec
    from screener.model.train import sample_seed

    diameters = [d for d in DIAMETERS_MM if d >= min_diameter_mm]
    grid = list(itertools.product(diameters, THICKNESSES_MM, KINDS, CONTRASTS))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(grid))
    j = 0
    for i in range(n):
        s = sample_seed(run_seed, space, seed * 1_000_003 + i)
        if i % 4 == 3:
            t = THICKNESSES_MM[i % len(THICKNESSES_MM)]
            c = CONTRASTS[(i // 4) % len(CONTRASTS)]
            yield s, SampleSpec(lesion=False, slice_thickness_mm=t, contrast=c)
        else:
            d, t, k, c = grid[order[j % len(grid)]]
            j += 1
            yield s, SampleSpec(lesion=True, kind=k, diameter_mm=d, slice_thickness_mm=t,
                                contrast=c, n_lesions=1)


def calibration_heads(gen: Any, run_seed: int, n: int, seed: int, measured_min_mm: float | None = None,
                      space: str = "calib", drawn_min_mm: float | None = None
                      ) -> Iterator[tuple[Any, Any]]:
    """(spec, sample) of the first n cases of a seed space (default the calibration space, lesions
    drawn at >= the claimed size; `drawn_min_mm` another lower bound), as the inference benchmarks
    and the verifier's training draw them: lesion heads whose lesion came out empty are dropped,
    and with `measured_min_mm` also those whose lesion measures less."""
    drawn = CLAIMED_MIN_DIAMETER_MM if drawn_min_mm is None else drawn_min_mm
    for s, spec in cases(n, seed, space, run_seed, drawn):
        sample = gen.sample(s, spec)
        if spec.lesion and not sample.lesion_mask.any():
            continue
        if spec.lesion and measured_min_mm is not None and (measured_diameter_mm(
                sample.lesion_mask.numpy(), sample.affine) or 0.0) < measured_min_mm:
            continue
        yield spec, sample


def realistic_flair_generator() -> Any:
    """A generator over the held-out label maps (18-20) with FLAIR grey matter at white matter's
    mean x 1.0-1.2, as on real FLAIR, and masses and oedemas drawn at 60-80 mm when their size is
    not fixed: what the large-oedema diagnostics in benchmarks/ draw from."""
    from screener.model.anatomy import load_all
    from screener.model.synth import SynthConfig, SynthGenerator

    cfg = SynthConfig(flair_gm_ratio=(1.0, 1.2), p_large_lesion=1.0, large_lesion_mm=(60.0, 80.0))
    return SynthGenerator(cfg, load_all(cfg.label_maps_dir, cfg.max_label_maps)[17:])


def oedema_heads(gen: Any, n: int, diameter_mm: float | None) -> list[Any]:
    """n FLAIR heads at 2 mm (seeds 500, 501, ...) with one oedema each, of `diameter_mm` or, for
    None, 60-80 mm (with realistic_flair_generator); heads whose oedema came out empty are
    dropped."""
    from screener.model.synth import SampleSpec

    samples = [gen.sample(500 + seed, SampleSpec(kind="oedema", contrast="FLAIR", n_lesions=1,
                                                 diameter_mm=diameter_mm, slice_thickness_mm=2.0))
               for seed in range(n)]
    return [s for s in samples if s.lesion_mask.any()]


def run_cases(n: int, seed: int, space: str, model: Any, config: dict[str, Any],
              min_diameter_mm: float = 0.0) -> list[CaseResult]:
    from tqdm import tqdm

    gen, run_seed = _generator(model.metadata)
    out = []
    todo = list(cases(n, seed, space, run_seed, min_diameter_mm))
    for s, spec in tqdm(todo, desc=f"synthetic {space}", unit="case"):
        sample = gen.sample(s, spec)
        has = bool(sample.lesion_mask.any())
        if spec.lesion and not has:  # lesion fell outside the brain after deformation: skip
            continue
        score, hit = run_case(sample, model, config)
        cnr = lesion_contrast_sd(sample.image[0].numpy(), sample.target.numpy())
        size = measured_diameter_mm(sample.lesion_mask.numpy(), sample.affine) if has else None
        out.append(CaseResult(lesion=spec.lesion, kind=spec.kind, diameter_mm=spec.diameter_mm,
                              slice_thickness_mm=float(spec.slice_thickness_mm or 2.0),
                              contrast=spec.contrast or "random", score=score, hit=hit,
                              contrast_sd=cnr, measured_diameter_mm=size))
    return out


def benchmark_table(results: list[CaseResult], threshold: float, model_info: dict[str, Any],
                    seed: int) -> dict[str, Any]:
    """Aggregate case results into the benchmark.json table (format in resolution.py).

    A cell's diameter_mm is the lower edge of a size class of *measured* lesion diameters
    (size_class_mm): the cell for 10 mm holds lesions measuring 10 to under 20 mm. Lesions
    measuring less than the smallest class are counted in `lesions_below_smallest_class` only.
    """
    cells: dict[tuple, list[int]] = {}
    strength: dict[tuple, list[int]] = {}
    below = 0
    for r in results:
        if not r.lesion:
            continue
        if r.measured_diameter_mm is None:
            raise ValueError("a lesion case without its measured diameter cannot be binned by size")
        size = size_class_mm(r.measured_diameter_mm)
        if size is None:
            below += 1
            continue
        detected = int(r.score >= threshold and r.hit)
        c = cells.setdefault((size, r.slice_thickness_mm, r.kind, r.contrast), [0, 0])
        c[0] += 1
        c[1] += detected
        if r.contrast_sd is not None:
            c = strength.setdefault((size, contrast_bin(r.contrast_sd)), [0, 0])
            c[0] += 1
            c[1] += detected
    normals = [r for r in results if not r.lesion]
    neg = sum(r.score < threshold for r in normals)
    return {
        "schema_version": "1", "model": model_info, "seed": seed, "score_threshold": threshold,
        "diameter_definition": "measured: maximum diameter of the drawn lesion mask in world mm "
                               "(as findings are measured); a cell's diameter_mm is the lower "
                               "edge of its size class",
        "lesions_below_smallest_class": below,
        "cells": [{"diameter_mm": k[0], "slice_thickness_mm": k[1], "kind": k[2], "contrast": k[3],
                   "n": v[0], "detected": v[1], "sensitivity": v[1] / v[0]}
                  for k, v in sorted(cells.items())],
        "by_contrast_sd": [{"diameter_mm": k[0], "contrast_sd_min": k[1], "n": v[0],
                            "detected": v[1]} for k, v in sorted(strength.items())],
        "specificity": {"n": len(normals), "negative": int(neg),
                        "value": neg / len(normals) if normals else None},
    }


CLAIMED_MIN_DIAMETER_MM = 10.0


def calibrate(model: Any, n: int, seed: int, config: dict[str, Any]) -> Any:
    """Fit and save weights/<name>/calibration.json from n held-out calibration heads.

    The target sensitivity is for the lesions the screener claims to find (measuring >= 10 mm,
    slices <= 5 mm): calibrating on sub-resolution lesions as well would push the threshold to
    zero and flag every study. Smaller lesions are measured by the benchmark, not calibrated.
    """
    from screener.calibrate import fit_calibration
    from screener.decide import decide_config

    dc = decide_config(config)
    drawn = run_cases(n, seed, "calib", model, config, CLAIMED_MIN_DIAMETER_MM)
    # Positives are lesions that *measure* at least the claimed size; a lesion drawn at 10 mm
    # that measures less is neither claimed nor lesion-free, so it does not enter calibration.
    res = [r for r in drawn if not r.lesion
           or (r.measured_diameter_mm or 0.0) >= CLAIMED_MIN_DIAMETER_MM]
    log.info("calibration: %d of %d lesion heads measure >= %g mm", sum(r.lesion for r in res),
             sum(r.lesion for r in drawn), CLAIMED_MIN_DIAMETER_MM)
    # A lesion case counts as positive evidence only when the finding is on the lesion; a
    # score from elsewhere must not lower the threshold needed to find the lesion itself.
    scores = [r.score if (not r.lesion or r.hit) else 0.0 for r in res]
    cal = fit_calibration(scores, [int(r.lesion) for r in res], dc.target_sensitivity, dc.delta,
                          dc.threshold_method)
    from screener.binding import score_settings

    cal = dataclasses.replace(cal, weights_sha256=model.weights_sha256,
                              settings=score_settings(model.config, config))
    cal.save(model.weights_dir / "calibration.json")
    return cal


def main(argv: list[str] | None = None) -> int:
    """`python -m screener.model.synth_eval calibrate --n 200 --seed 1`."""
    ap = argparse.ArgumentParser(description="Calibrate the model on held-out synthetic heads.")
    ap.add_argument("command", choices=["calibrate"])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--config")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    from screener.pipeline import load_model

    cfg = load_config(a.config)
    model = load_model(cfg, a.device)
    cal = calibrate(model, a.n, a.seed, cfg)
    print(json.dumps(cal.summary(), indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
