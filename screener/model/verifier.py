"""Finding verifier: a second stage that scores each finding of the fused map as lesion or not.

The fused map (learned lesion channel + tissue-conditional outliers) finds most large lesions
but also paints false findings on every lesion-free head (partial volume at the brain's
surface, sulcal CSF, thin specks). What a finding looks like tells them apart in part: where it
lies (near the brain's edge, on what the network calls CSF or cortex), how the learned channel
and the outlier term agree in it, how large and how compact it is. The verifier is a logistic
regression over such features of each connected component, fitted on synthetic heads drawn
from the *training* label maps (`screener train-verifier`), never on the held-out heads that
calibrate or judge the screener. A finding's verifier probability becomes its score; the study
score is the largest, as before.

Stored as JSON beside the network (`verifier.json`: feature names, standardisation,
coefficients), so loading it runs no code.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from screener.model.anatomy import Tissue

VERIFIER_FILE = "verifier.json"

# Per finding, in this order (finding_features):
FEATURES = (
    "log_volume_ml",        # ln of the component's volume
    "fused_max",            # fused probability, max and mean over the component
    "fused_mean",
    "learned_max",          # the network's lesion channel alone, max and mean
    "learned_mean",
    "learned_share",        # share of the component where the learned channel is >= 0.5
    "abs_z_median",         # outlier z (tissue-conditional), median |z| and median signed z
    "z_median",
    "edge_share",           # share of the component within EDGE_MM of the judged region's edge
    "csf_share",            # share the network calls CSF / ventricle / grey / white matter
    "ventricle_share",
    "gm_share",
    "wm_share",
    "compactness",          # volume / volume of the sphere of the finding's max diameter
)
EDGE_MM = 4.0


@dataclass(frozen=True)
class Verifier:
    """A logistic regression over standardised finding features."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    provenance: dict[str, Any]

    def probability(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """P(lesion) per row of a (n, len(features)) feature matrix."""
        a = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if a.shape[1] != len(self.features):
            raise ValueError(f"{a.shape[1]} features given, the verifier takes {len(self.features)}")
        logit = ((a - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.coef)
        return 1.0 / (1.0 + np.exp(-(logit + self.intercept)))

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / VERIFIER_FILE
        from screener.atomic import write_text_atomic

        write_text_atomic(path, json.dumps(asdict(self), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Verifier:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        v = cls(features=tuple(d["features"]), mean=tuple(d["mean"]), scale=tuple(d["scale"]),
                coef=tuple(d["coef"]), intercept=float(d["intercept"]),
                provenance=dict(d.get("provenance") or {}))
        if v.features != FEATURES:
            raise ValueError(f"{path}: verifier features {v.features} are not this version's "
                             f"{FEATURES}")
        if not (len(v.mean) == len(v.scale) == len(v.coef) == len(FEATURES)):
            raise ValueError(f"{path}: verifier arrays do not match its features")
        if not all(math.isfinite(t) for t in (*v.mean, *v.coef, v.intercept)) or \
                not all(s > 0 and math.isfinite(s) for s in v.scale):
            raise ValueError(f"{path}: verifier holds non-finite or non-positive numbers")
        return v


def fit(x: npt.ArrayLike, y: npt.ArrayLike, c: float = 1.0, provenance: dict[str, Any] | None = None
        ) -> Verifier:
    """Fit the verifier: L2-penalised logistic regression on standardised features, the
    objective of scikit-learn's LogisticRegression(C=c) (intercept not penalised), minimised by
    SciPy's L-BFGS with the exact gradient. Not scikit-learn itself: MONAI's eager import loads
    scikit-learn whenever it is installed, which slows every `screen` start (README, Speed)."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    a = np.asarray(x, dtype=np.float64)
    t = np.asarray(y).astype(np.float64)
    if a.ndim != 2 or a.shape[1] != len(FEATURES) or len(a) != len(t):
        raise ValueError(f"features {a.shape} and labels {t.shape} do not fit {len(FEATURES)} features")
    if len(set(t.tolist())) < 2:
        raise ValueError("the verifier needs findings of both kinds (lesion and not)")
    if c <= 0:
        raise ValueError(f"c must be positive, not {c}")
    mean = a.mean(0)
    scale = a.std(0)
    scale[scale < 1e-9] = 1.0
    z = (a - mean) / scale
    sign = 2.0 * t - 1.0

    def objective(w: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        m = sign * (z @ w[:-1] + w[-1])
        loss = -float(log_expit(m).sum()) + 0.5 / c * float(w[:-1] @ w[:-1])
        g = -sign * expit(-m)  # d loss / d logit
        return loss, np.concatenate([z.T @ g + w[:-1] / c, [g.sum()]])

    res = minimize(objective, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B",
                   options={"maxiter": 5000, "gtol": 1e-8})
    if not res.success:
        raise RuntimeError(f"verifier fit did not converge: {res.message}")
    return Verifier(features=FEATURES, mean=tuple(float(v) for v in mean),
                    scale=tuple(float(v) for v in scale),
                    coef=tuple(float(v) for v in res.x[:-1]), intercept=float(res.x[-1]),
                    provenance=dict(provenance or {}))


def finding_features(labels: npt.NDArray[np.integer[Any]], n_findings: int,
                     fused: npt.NDArray[np.floating[Any]], learned: npt.NDArray[np.floating[Any]],
                     outlier_z: npt.NDArray[np.floating[Any]], tissue: npt.NDArray[np.integer[Any]],
                     judged: npt.NDArray[np.bool_], affine: npt.ArrayLike,
                     diameters_mm: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """One row of FEATURES per finding label 1..n_findings (all maps on the series grid).

    Args:
        labels: SeriesAnalysis.labels (0 = background, k = finding k).
        fused: the fused lesion probability the findings were cut from.
        learned: the network's lesion channel alone (Prediction.learned_prob).
        outlier_z: signed tissue-conditional z (Prediction.outlier_z).
        tissue: argmax tissue class (Prediction.tissue).
        judged: where findings may lie (infer.assessment_mask).
        affine: voxel -> RAS mm.
        diameters_mm: each finding's max diameter (Finding.max_diameter_mm), in label order.
    """
    from scipy import ndimage

    aff = np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(aff[:3, :3], axis=0)
    voxel_ml = abs(float(np.linalg.det(aff[:3, :3]))) / 1000.0
    pad = np.ceil(EDGE_MM / spacing).astype(int) + 1
    out = np.zeros((n_findings, len(FEATURES)), dtype=np.float64)
    objects = ndimage.find_objects(labels, max_label=n_findings)
    diam = np.asarray(diameters_mm, dtype=np.float64)
    for k in range(1, n_findings + 1):
        box = objects[k - 1]
        if box is None:
            raise ValueError(f"finding {k} has no voxels")
        lo = np.maximum([s.start for s in box] - pad, 0)
        hi = np.minimum([s.stop for s in box] + pad, labels.shape)
        wide = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        comp = labels[wide] == k
        # Distance to the nearest voxel outside the judged region; the box reaches EDGE_MM
        # beyond the finding, so every such voxel that matters lies inside it. The box's own
        # border is not an edge: pad it with judged voxels.
        inside = np.pad(judged[wide], 1, mode="constant", constant_values=True)
        depth = ndimage.distance_transform_edt(inside, sampling=spacing)[1:-1, 1:-1, 1:-1]
        f, le, z, t = fused[wide][comp], learned[wide][comp], outlier_z[wide][comp], tissue[wide][comp]
        volume = float(comp.sum()) * voxel_ml
        d = max(float(diam[k - 1]), 1e-3)
        out[k - 1] = (
            math.log(volume), float(f.max()), float(f.mean()), float(le.max()), float(le.mean()),
            float(np.mean(le >= 0.5)), float(np.median(np.abs(z))), float(np.median(z)),
            float(np.mean(depth[comp] <= EDGE_MM)),
            float(np.mean(t == int(Tissue.CSF))), float(np.mean(t == int(Tissue.VENTRICLE))),
            float(np.mean(t == int(Tissue.GM))), float(np.mean(t == int(Tissue.WM))),
            min(volume * 1000.0 / (math.pi / 6.0 * d ** 3), 1.0))
    return out


@dataclass
class HeadFindings:
    """A synthetic head's findings with their features and whether each touches the lesion."""

    lesion: bool  # the head holds a lesion
    features: npt.NDArray[np.float64]  # (n_findings, len(FEATURES)), rows in Finding.label order
    touches: npt.NDArray[np.bool_]  # per row: the finding overlaps the drawn lesion
    scores: npt.NDArray[np.float64]  # per row: the finding's score without the verifier


def series_features(analysis: Any, pred: Any, judged: npt.NDArray[np.bool_],
                    affine: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """finding_features of a SeriesAnalysis from a Prediction made with diagnostics=True; rows
    in Finding.label order (1, 2, ...)."""
    if pred.learned_prob is None or pred.outlier_z is None or pred.tissue is None:
        raise ValueError("the verifier needs predict(..., diagnostics=True)")
    by_label = sorted(analysis.findings, key=lambda f: f.label)
    return finding_features(analysis.labels, len(by_label), pred.lesion_prob, pred.learned_prob,
                            pred.outlier_z, pred.tissue, judged, affine,
                            [f.max_diameter_mm for f in by_label])


def head_findings(sample: Any, model: Any, dc: Any) -> HeadFindings:
    """Screen one synthetic head as the screen judges a series (without the verifier) and
    describe its findings for the verifier."""
    from screener.infer import predict
    from screener.types import SeriesInfo, SeriesVolume

    img = sample.image[0].numpy().astype(np.float32)
    pred = predict(SeriesVolume(data=img, affine=sample.affine,
                                info=SeriesInfo("synthetic", "synthetic")), model, diagnostics=True)
    a, x = analyse_prediction(pred, img, sample.affine, "synthetic", dc, None, features=True)
    assert x is not None
    truth = sample.lesion_mask.numpy().astype(bool)
    by_label = sorted(a.findings, key=lambda f: f.label)
    touches = np.array([bool(truth[a.labels == f.label].any()) for f in by_label], dtype=bool)
    return HeadFindings(lesion=bool(truth.any()), features=x, touches=touches,
                        scores=np.array([f.score for f in by_label], dtype=np.float64))


def rescore(analysis: Any, x: npt.NDArray[np.float64], verifier: Verifier) -> Any:
    """The SeriesAnalysis with each finding scored by the verifier (features `x`, rows in
    Finding.label order): score = verifier probability; study score = the largest."""
    import dataclasses

    by_label = sorted(analysis.findings, key=lambda f: f.label)
    if not np.all(np.isfinite(x)):  # as analyse_series: a broken map must not become a score
        raise ValueError("finding features contain NaN or infinity")
    p = verifier.probability(x) if len(by_label) else np.zeros(0)
    findings = [dataclasses.replace(f, score=float(q), verifier_probability=float(q))
                for f, q in zip(by_label, p)]
    findings.sort(key=lambda f: (-f.score, -f.volume_ml))
    return dataclasses.replace(analysis, findings=findings,
                               score=max((f.score for f in findings), default=0.0))


def analyse_prediction(pred: Any, image: npt.ArrayLike, affine: npt.ArrayLike, series: str,
                       dc: Any, verifier: Verifier | None, features: bool = False
                       ) -> tuple[Any, npt.NDArray[np.float64] | None]:
    """decide.analyse_series of a Prediction over its assessment mask (as the screen judges a
    series), then, with a verifier, its findings rescored; the prediction must then come from
    predict(..., diagnostics=True). Returns (analysis, the findings' feature rows in label order,
    or None when neither a verifier nor `features` asked for them)."""
    from screener.decide import analyse_series
    from screener.infer import assessment_mask

    judged = assessment_mask(pred, dc.brain_threshold)
    a = analyse_series(pred.lesion_prob, judged, image, affine, series, dc)
    if verifier is None and not features:
        return a, None
    x = series_features(a, pred, judged, affine)
    return (a if verifier is None else rescore(a, x, verifier)), x


def collect(model: Any, dc: Any, n: int, seed: int, progress: bool = True) -> list[HeadFindings]:
    """Findings of n synthetic heads drawn from the *training* label maps in the "verify" seed
    space (never the held-out maps that calibrate and judge), every lesion size of the benchmark
    grid, every 4th head lesion-free; lesion heads whose lesion came out empty are skipped."""
    from tqdm import tqdm

    from screener.model import synth_eval

    gen, run_seed = synth_eval._generator(model.metadata, training_maps=True)
    heads = synth_eval.calibration_heads(gen, run_seed, n, seed, space="verify", drawn_min_mm=0.0)
    return [head_findings(sample, model, dc)
            for _, sample in tqdm(heads, desc="verifier heads", unit="head", total=n,
                                  disable=not progress)]


def train_verifier(weights: str | Path, n: int = 480, seed: int = 1, c: float = 1.0,
                   progress: bool = True) -> Verifier:
    """Fit a verifier for the network in `weights` and write it into that bundle (verifier.json,
    its sha256 and provenance in configs/metadata.json)."""
    import dataclasses

    from screener.model import synth_eval
    from screener.model.bundle import sha256_file
    from screener.atomic import write_json_atomic

    wdir = Path(weights)
    _, dc, model = synth_eval.load_for_measuring(str(wdir))
    model = dataclasses.replace(model, verifier=None)  # features of the fused map alone
    heads = collect(model, dc, n, seed, progress)
    x = np.concatenate([h.features for h in heads if len(h.features)])
    y = np.concatenate([h.touches for h in heads if len(h.features)])
    prov = {"command": f"screener train-verifier --weights WEIGHTS_DIR --heads {n} --seed {seed} --c {c:g}",
            "heads": len(heads), "lesion_heads": sum(h.lesion for h in heads),
            "findings": int(len(y)), "findings_on_lesions": int(y.sum()),
            "data": "synthetic heads from the training label maps (seed space 'verify'), "
                    "screened by this bundle's network; a finding is a lesion when it overlaps "
                    "the drawn lesion",
            "network_sha256": model.weights_sha256}
    v = fit(x, y, c=c, provenance=prov)
    path = v.save(wdir)
    meta_path = wdir / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta.setdefault("sha256", {})[VERIFIER_FILE] = sha256_file(path)
    meta["verifier"] = {"file": VERIFIER_FILE, "features": list(FEATURES), **prov}
    write_json_atomic(meta_path, meta)
    return v


def run_train_verifier_cli(args: Any) -> int:
    v = train_verifier(args.weights, n=args.heads, seed=args.seed, c=args.c)
    p = v.provenance
    print(f"verifier.json written to {args.weights}: {p['findings']} findings of {p['heads']} "
          f"heads ({p['findings_on_lesions']} on a lesion)")
    for name, coef in sorted(zip(v.features, v.coef), key=lambda t: -abs(t[1])):
        print(f"  {name:16s} {coef:+.3f}")
    return 0
