"""Why lesions are missed: per-lesion rows on calibration heads, an anatomy-oracle bound for the
outlier term, and training against held-out anatomy.

Three measurements on the calibration heads (seed 1, lesions drawn at >= 10 mm, every 4th head lesion-free;
the same heads as benchmarks/inference_settings.py), none on benchmark or real cases:

1. Per lesion: kind, diameter (drawn, and measured as findings are), slice thickness, contrast, how far it stands out from the brain
   around it (synth_eval.lesion_contrast_sd), the learned channel's and the fused map's maximum
   inside it, and how much of it the brain mask covers. A lesion that stands out but lies
   outside the brain mask is a mask failure; one that does not stand out is a subtle lesion.
2. Anatomy oracle: the tissue-conditional outlier term (model/outlier.py) computed with the
   generator's true pre-lesion tissue map instead of the network's posteriors, with the true
   brain as the region. Its hits bound what judging intensity against anatomy can find on these
   heads, whatever the network learns about anatomy.
3. With --train-maps: the same specs drawn from the training label maps as well as the held-out
   ones. Similar hits on both mean the network under-fits the lesion task, rather than having
   learned the training anatomies by heart.
4. Where the false findings of lesion-free heads lie: their voxels (p >= 0.5 inside the region
   judged) by the label map's original (FreeSurfer / SynthSeg) label, for the learned channel and
   the fused map.

    .venv/bin/python benchmarks/lesion_diagnostics.py --n 60 [--weights DIR] [--train-maps]

About 5 minutes per 60 heads on 2 CPU cores (twice that with --train-maps).
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np


def _spy_tissue(synth_mod: Any) -> dict[str, Any]:
    """Record the pre-lesion tissue map the generator hands to render_lesions."""
    captured: dict[str, Any] = {}
    orig = synth_mod.lesion_lib.render_lesions

    def spy(img, tissue, *a, **k):
        captured["tissue"] = tissue.clone()
        return orig(img, tissue, *a, **k)

    synth_mod.lesion_lib.render_lesions = spy
    return captured


def _heads(gen: Any, n: int, run_seed: int, captured: dict[str, Any]) -> Iterator[tuple[Any, Any, np.ndarray]]:
    from screener.model import synth_eval

    for s, spec in synth_eval.cases(n, 1, "calib", run_seed, synth_eval.CLAIMED_MIN_DIAMETER_MM):
        captured.clear()
        sample = gen.sample(s, spec)
        if spec.lesion and not sample.lesion_mask.any():
            continue
        healthy = captured["tissue"].numpy() if "tissue" in captured else sample.target.numpy()
        yield spec, sample, healthy


def _spy_labels(synth_mod: Any) -> dict[str, Any]:
    """Record each head's original labels (the label map's values at the sampled points)."""
    captured: dict[str, Any] = {}
    cls = synth_mod.SynthGenerator
    orig = cls._sample_labels

    def spy(self, map_idx, pts):
        out = orig(self, map_idx, pts)
        captured["labels"] = self.maps[map_idx].labels[out.numpy()]
        return out

    cls._sample_labels = spy
    return captured


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60, help="calibration heads (3 of 4 with a lesion)")
    ap.add_argument("--weights", default=None, help="weights bundle directory (default: config's)")
    ap.add_argument("--train-maps", action="store_true",
                    help="also draw the same specs from the training label maps")
    args = ap.parse_args()

    import screener.model.synth as synth_mod
    from screener.decide import analyse_series
    from screener.infer import assessment_mask, outlier_probability, predict
    from screener.model import synth_eval
    from screener.model.anatomy import N_CLASSES, Tissue
    from screener.model.outlier import outlier_z
    from screener.types import SeriesInfo, SeriesVolume

    _, dc, model = synth_eval.load_for_measuring(args.weights)
    groups = [("held-out maps", False)] + ([("training maps", True)] if args.train_maps else [])
    captured = _spy_tissue(synth_mod)
    original = _spy_labels(synth_mod)
    mc = model.config
    print(f"weights {model.name} {model.version}; calibration heads seed 1, n={args.n}")
    for title, training_maps in groups:
        gen, run_seed = synth_eval._generator(model.metadata, training_maps)
        hits = {"fused": [], "learned": [], "oracle outlier": []}
        false_ml: dict[str, list[float]] = {k: [] for k in hits}
        false_labels: dict[str, Counter[int]] = {"learned": Counter(), "fused": Counter()}
        region_labels: Counter[int] = Counter()
        print(f"\n{title}:")
        for spec, sample, healthy in _heads(gen, args.n, run_seed, captured):
            img = sample.image[0].numpy()
            truth = sample.target.numpy()
            les = truth == int(Tissue.LESION)
            pred = predict(SeriesVolume(data=img, affine=sample.affine,
                                        info=SeriesInfo("s", "s")), model, diagnostics=True)
            region = assessment_mask(pred, dc.brain_threshold)
            onehot = np.eye(N_CLASSES, dtype=np.float32)[healthy].transpose(3, 0, 1, 2)
            z = outlier_z(img, onehot, model.voxel_mm, mc.outlier)
            oracle = outlier_probability(z, onehot[[int(Tissue.WM), int(Tissue.GM)]].sum(0), mc)
            true_brain = np.isin(healthy, (int(Tissue.WM), int(Tissue.GM), int(Tissue.VENTRICLE)))
            voxel_ml = abs(float(np.linalg.det(sample.affine[:3, :3]))) / 1000.0
            for name, prob, where in (("fused", pred.lesion_prob, region),
                                      ("learned", pred.learned_prob, region),
                                      ("oracle outlier", oracle.astype(np.float32), true_brain)):
                found = analyse_series(prob, where, img, sample.affine, "s", dc).labels > 0
                if spec.lesion:
                    hits[name].append(bool((found & les).any()))
                else:
                    false_ml[name].append(float(found.sum()) * voxel_ml)
                    if name in false_labels:
                        false_labels[name].update(original["labels"][(prob >= 0.5) & where].tolist())
            if not spec.lesion:
                region_labels.update(original["labels"][region].tolist())
            if spec.lesion and title.startswith("held"):
                sd = synth_eval.lesion_contrast_sd(img, truth)
                size = synth_eval.measured_diameter_mm(les, sample.affine) or 0.0
                print(f"  {spec.kind:13s} drawn {spec.diameter_mm:3.0f} mm, measures {size:5.1f} mm"
                      f"  slices {spec.slice_thickness_mm:g} mm"
                      f"  {spec.contrast:6s} contrast {'n/a' if sd is None else f'{sd:4.1f}'} SD"
                      f"  learned max {pred.learned_prob[les].max():.2f}"
                      f"  fused max {pred.lesion_prob[les].max():.2f}"
                      f"  brain cover {region[les].mean():.2f}"
                      f"  {'hit' if hits['fused'][-1] else 'MISSED'}", flush=True)
        for name in hits:
            print(f"  {title}: {name:14s} hits {sum(hits[name])}/{len(hits[name])}, false volume on "
                  f"lesion-free heads median {np.median(false_ml[name]):.1f} ml "
                  f"(n={len(false_ml[name])})", flush=True)
        for name, counts in false_labels.items():
            total = sum(counts.values())
            print(f"  {title}: {name} p >= 0.5 on lesion-free heads, {total * voxel_ml:.0f} ml in all; "
                  "by original label (share of these voxels / share of that label's judged voxels):")
            print("    " + ", ".join(f"{lab} {k / total:.2f}/{k / region_labels[lab]:.3f}"
                                     for lab, k in counts.most_common(10)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
