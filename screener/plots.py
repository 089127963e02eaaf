"""Evaluation figures (matplotlib, Agg): ROC, sensitivity by lesion size, reliability diagram,
the synthetic benchmark, the training curve.

The evaluation figures draw the model beside the FLAIR-threshold baseline; every figure states n.
Figures are rendered in memory and written atomically.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from screener.atomic import write_bytes_atomic


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return write_bytes_atomic(path, buf.getvalue())


def _figure(ncols: int = 1, figsize: tuple[float, float] = (5.2, 4.2)) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=figsize)


def roc_plot(path: Path, curves: dict[str, tuple[Sequence[bool], Sequence[float]]],
             aurocs: dict[str, float | None]) -> Path:
    """ROC curves of each method from (truth, scores); methods with one class say so."""
    from screener.metrics import roc_points

    fig, ax = _figure()
    for name, (truth, scores) in curves.items():
        if len(set(truth)) < 2:
            ax.plot([], [], label=f"{name}: undefined (one class, n={len(truth)})")
            continue
        fpr, tpr = roc_points(list(truth), list(scores))
        auc = aurocs.get(name)
        ax.plot(fpr, tpr, drawstyle="steps-post", marker="o", ms=3,
                label=f"{name}: AUROC {auc:.3f} (n={len(truth)})" if auc is not None else name)
    ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(-0.02, 1.02), ylim=(-0.02, 1.02),
           title="Study-level ROC (analysed studies)")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def size_plot(path: Path, rows: dict[str, list[dict[str, Any]]]) -> Path:
    """Lesion detection rate per size bin with Wilson 95 % intervals, one bar group per bin."""
    import numpy as np

    fig, ax = _figure()
    names = list(rows)
    first = rows[names[0]] if names else []
    x = np.arange(len(first))
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        vals = [r["value"] if r["value"] is not None else 0.0 for r in rows[name]]
        lo = [v - r["ci95"][0] if r["ci95"] else 0.0 for v, r in zip(vals, rows[name])]
        hi = [r["ci95"][1] - v if r["ci95"] else 0.0 for v, r in zip(vals, rows[name])]
        ax.bar(x + i * width - 0.4 + width / 2, vals, width, yerr=[lo, hi], capsize=3, label=name)
    labels = [f"{r['lo']:g}-{r['hi']:g}\n(n={r['n']})" if r["hi"] < 999 else
              f">={r['lo']:g}\n(n={r['n']})" for r in first]
    ax.set_xticks(x, labels, fontsize=7)
    ax.set(xlabel="lesion equivalent diameter (mm)", ylabel="detection rate", ylim=(0, 1.05),
           title="Lesion-level detection by size")
    ax.legend(fontsize=8)
    return _save(fig, path)


def calibration_plot(path: Path, bins: list[dict[str, Any]], ece: float | None, n: int) -> Path:
    """Reliability diagram: observed accuracy against mean confidence per bin."""
    fig, ax = _figure()
    centres = [(b["lo"] + b["hi"]) / 2 for b in bins]
    acc = [b["accuracy"] if b["n"] else 0.0 for b in bins]
    ax.bar(centres, acc, width=bins[0]["hi"] - bins[0]["lo"] if bins else 0.1, alpha=0.6,
           edgecolor="k", label="observed accuracy")
    for b, c in zip(bins, centres):
        if b["n"]:
            ax.text(c, 0.02, str(b["n"]), ha="center", fontsize=7)
    ax.plot([0, 1], [0, 1], ls=":", c="grey", label="perfect calibration")
    ece_text = f"{ece:.3f}" if ece is not None else "n/a"
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.05),
           title=f"Calibration of confidence (n={n}, ECE {ece_text})")
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def benchmark_plot(path: Path, table: dict[str, Any]) -> Path:
    """The held-out synthetic benchmark at a glance: left, detection by measured lesion size, one
    line per slice thickness (pooled over kinds and contrasts) with Wilson 95 % intervals and n;
    right, lesions of the 10 mm class and larger by how far they stand out from the brain around
    them. The dashed line is the 90 % a resolution claim needs; the title gives the specificity."""
    from screener.synthetic_benchmark import pooled_by_contrast_sd, pooled_sensitivity_by_diameter

    def errors(rows: list[dict[str, Any]]) -> list[list[float]]:
        ci = [r["ci95"] or (r["value"], r["value"]) for r in rows]
        return [[r["value"] - lo for r, (lo, _) in zip(rows, ci)],
                [hi - r["value"] for r, (_, hi) in zip(rows, ci)]]

    fig, (ax, ax_sd) = _figure(2, (11, 4.2))
    pooled = pooled_sensitivity_by_diameter(table)
    classes = list(pooled)
    for t in [None] + sorted({float(c["slice_thickness_mm"]) for c in table.get("cells", [])}):
        rows = pooled if t is None else pooled_sensitivity_by_diameter(table, t)
        ds = list(rows)
        ax.errorbar([classes.index(d) + (0 if t is None else 0.04 * (t - 3)) for d in ds],
                    [rows[d]["value"] for d in ds], yerr=errors([rows[d] for d in ds]),
                    marker="o", ms=4, capsize=3, lw=2.2 if t is None else 1,
                    color="k" if t is None else None,
                    label="all thicknesses" if t is None else f"{t:g} mm slices")
    ax.axhline(0.9, ls="--", c="grey", lw=1)
    upper = classes[1:] + [None]
    ax.set_xticks(range(len(classes)),
                  [(f"{d:g}-{u:g}" if u is not None else f">={d:g}") + f"\nn={pooled[d]['n']}"
                   for d, u in zip(classes, upper)], fontsize=8)
    ax.set(xlabel="measured lesion diameter (mm); n over all thicknesses", ylabel="lesions detected",
           ylim=(0, 1.05), title="Detection by lesion size")
    if pooled:
        ax.legend(fontsize=8, loc="upper left")
    by_sd = pooled_by_contrast_sd(table)
    bins = list(by_sd)
    ax_sd.bar(range(len(bins)), [by_sd[b]["value"] for b in bins],
              yerr=errors([by_sd[b] for b in bins]), capsize=3, color="tab:blue", alpha=0.7)
    edges = bins + [None]
    ax_sd.set_xticks(range(len(bins)),
                     [(f"{lo:g}-{hi:g} SD" if hi is not None else f">={lo:g} SD")
                      + f"\n{by_sd[lo]['k']}/{by_sd[lo]['n']}"
                      for lo, hi in zip(edges[:-1], edges[1:])], fontsize=8)
    ax_sd.axhline(0.9, ls="--", c="grey", lw=1)
    ax_sd.set(ylim=(0, 1.05), xlabel="how far the lesion stands out from the brain around it",
              title="Lesions >= 10 mm by contrast to their surroundings")
    spec = table.get("specificity") or {}
    model = table.get("model") or {}
    fig.suptitle(f"Held-out synthetic benchmark, {model.get('name', '?')} {model.get('version', '?')}, "
                 f"seed {table.get('seed')}, {table.get('n_screened')} heads; specificity "
                 f"{spec.get('negative', 0)}/{spec.get('n', 0)} lesion-free heads at the operating "
                 "point", fontsize=9)
    return _save(fig, path)


def _read_log(log_path: Path, stop: int | None = None) -> dict[int, dict[str, Any]]:
    """A run's log.jsonl by iteration (a record repeated by a resume: the later one counts),
    up to and including iteration `stop` when given."""
    import json

    records: dict[int, dict[str, Any]] = {}
    for line in Path(log_path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            if stop is None or int(rec["it"]) <= stop:
                records[int(rec["it"])] = rec
    return records


def parse_log_spec(spec: str) -> tuple[Path, int | None]:
    """`LOG.jsonl` or `LOG.jsonl@ITERATION` (the run drawn up to that iteration)."""
    path, sep, stop = spec.rpartition("@")
    if not sep:
        return Path(spec), None
    return Path(path), int(stop)


def training_curve(log_path: Path | Sequence[tuple[Path, int | None]], path: Path) -> Path:
    """Training loss and held-out validation figures against training crops seen, from a run's
    log.jsonl (records before batches carry no "samples": one crop per iteration then).

    The log is appended by every (resumed) run, so a record repeated by a resume is drawn once
    (the later one). Given a lineage instead, [(log, last iteration or None), ...], the runs are
    drawn one after the other as the shipped network was trained (a fine-tune that started from
    the first run's network at that iteration continues its curve), with a line where each begins.
    """
    runs = [(Path(log_path), None)] if isinstance(log_path, (str, Path)) else list(log_path)
    fig, (ax_loss, ax_val) = _figure(2, (10, 4))
    offset = 0
    for n_run, (log, stop) in enumerate(runs):
        records = _read_log(log, stop)
        its = sorted(records)
        if not its:
            continue
        seen = {i: offset + int(records[i].get("samples", i)) for i in its}
        name = Path(log).parent.name
        if n_run:
            for ax in (ax_loss, ax_val):
                ax.axvline(offset, ls=":", c="grey", lw=1)
            ax_loss.annotate(f"{name} from here", (offset, 1.0), xycoords=("data", "axes fraction"),
                             fontsize=7, ha="left", va="top", rotation=90)
        ax_loss.plot([seen[i] for i in its], [records[i]["loss"] for i in its], lw=1,
                     c=f"C{n_run}", label=name)
        val = [i for i in its if "brain_dice" in records[i]]
        for m, (key, label) in enumerate((("brain_dice", "brain Dice"), ("lesion_dice", "lesion Dice"),
                                           ("lesion_detected", "lesions touched"))):
            ax_val.plot([seen[i] for i in val], [records[i][key] for i in val], marker="o", ms=3,
                        c=f"C{m}", ls="-" if n_run == 0 else "--",
                        label=label if n_run == 0 else None)
        offset = seen[its[-1]]
    ax_loss.set(xlabel="training crops seen", ylabel="Dice + cross-entropy loss",
                title="Training loss")
    if len(runs) > 1:
        ax_loss.legend(fontsize=7)
    ax_val.set(xlabel="training crops seen", ylim=(0, 1),
               title="Validation (held-out synthetic heads)")
    ax_val.legend(fontsize=8)
    return _save(fig, path)


def main(argv: list[str] | None = None) -> int:
    """`python -m screener.plots training-curve LOG.jsonl[@ITERATION] ... OUT.png` or
    `python -m screener.plots benchmark BENCHMARK.json OUT.png`."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description="Draw the training curve of a run (or of a lineage of "
                                 "runs), or a benchmark.")
    ap.add_argument("what", choices=["training-curve", "benchmark"])
    ap.add_argument("src", nargs="+", help="training-curve: LOG.jsonl[@ITERATION] ..., the runs in "
                    "the order they trained the network; benchmark: a benchmark.json")
    ap.add_argument("out", type=Path)
    a = ap.parse_args(argv)
    if a.what == "benchmark":
        if len(a.src) != 1:
            ap.error("benchmark takes one benchmark.json")
        print(benchmark_plot(a.out, json.loads(Path(a.src[0]).read_text(encoding="utf-8"))))
    else:
        print(training_curve([parse_log_spec(s) for s in a.src], a.out))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
