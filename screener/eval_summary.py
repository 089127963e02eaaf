"""Human-facing outputs of `screener evaluate`: the three figures and summary.md.

summary.md is a Markdown table that can be pasted into the README: every figure of the model
beside the FLAIR-threshold baseline's, each with its numerator/denominator and 95 % interval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from screener.atomic import write_text_atomic


def _prop(p: dict[str, Any] | None) -> str:
    if not p or p.get("value") is None:
        return f"n/a (n={p['n']})" if p else "n/a"
    lo, hi = p["ci95"]
    return f"{p['value']:.3f} ({p['k']}/{p['n']}; 95% CI {lo:.2f}-{hi:.2f})"


def _value_ci(v: dict[str, Any] | None, n: int | None = None, key: str = "value") -> str:
    if not v or v.get(key) is None:
        return "n/a" + (f" (n={n})" if n is not None else "")
    text = f"{v[key]:.3f}"
    if v.get("ci95"):
        text += f" (95% CI {v['ci95'][0]:.2f}-{v['ci95'][1]:.2f})"
    n = v.get("n", n)
    return text + (f", n={n}" if n is not None else "")


def summary_markdown(metrics: dict[str, Any]) -> str:
    """Markdown summary table: model beside baseline."""
    m, b = metrics["model"], metrics["baseline"]
    ms, bs = m["study"], b["study"]
    lines = [
        f"Evaluation of `{metrics.get('source', '')}`: {metrics['n_cases']} studies "
        f"({ms['n_abnormal']} abnormal, {ms['n_normal']} normal"
        + (f", {metrics['unlabelled_excluded']} unlabelled excluded" if
           metrics["unlabelled_excluded"] else "") + ").",
        "",
        "| figure | screener | FLAIR-threshold baseline |",
        "|---|---|---|",
        f"| AUROC (analysed studies) | {_value_ci(ms['ranking']['auroc'], ms['ranking']['n'])} "
        f"| {_value_ci(bs['ranking']['auroc'], bs['ranking']['n'])} |",
        f"| average precision | {_value_ci(ms['ranking']['average_precision'], ms['ranking']['n'])}"
        f" | {_value_ci(bs['ranking']['average_precision'], bs['ranking']['n'])} |",
    ]
    for key, label in (("sensitivity", "sensitivity"), ("specificity", "specificity"),
                       ("ppv", "PPV"), ("npv", "NPV")):
        lines.append(f"| {label} (operating point, indeterminate = referred) | "
                     f"{_prop(ms['operating_point'][key])} | {_prop(bs['operating_point'][key])} |")
    for key, label in (("sensitivity", "sensitivity"), ("specificity", "specificity")):
        lines.append(f"| {label} (assessed studies only) | {_prop(ms['assessed_only'][key])} | "
                     f"{_prop(bs['assessed_only'][key])} |")
    lines += [
        f"| indeterminate or failed | {_prop(ms['indeterminate_rate'])} | "
        f"{_prop(bs['indeterminate_rate'])} |",
        f"| workload reduction (called negative) | {_prop(ms['workload_reduction'])} | "
        f"{_prop(bs['workload_reduction'])} |",
        f"| ECE of confidence | "
        f"{_value_ci({'value': ms['calibration']['ece']}, ms['calibration']['n'])} | "
        f"n/a (no confidence) |",
        f"| voxel Dice (mean over cases with mask) | {_value_ci(m['voxel']['dice'], key='mean')} | "
        f"{_value_ci(b['voxel']['dice'], key='mean')} |",
        f"| voxel AUPRC (mean) | {_value_ci(m['voxel']['auprc'], key='mean')} | "
        f"{_value_ci(b['voxel']['auprc'], key='mean')} |",
        f"| lesions detected (all sizes) | {_prop(m['lesion']['detection'])} | "
        f"{_prop(b['lesion']['detection'])} |",
    ]
    for rm, rb in zip(m["lesion"]["by_diameter_mm"], b["lesion"]["by_diameter_mm"]):
        span = f"{rm['lo']:g}-{rm['hi']:g} mm" if rm["hi"] < 999 else f">= {rm['lo']:g} mm"
        if rm["n"]:
            lines.append(f"| lesions detected, {span} | {_prop(rm)} | {_prop(rb)} |")
    lines += [
        "",
        "Operating point: a study counts as referred unless called negative (indeterminate "
        "and failed studies go to a reader). Proportions: Wilson 95% intervals; AUROC/AP: "
        "stratified bootstrap; Dice/AUPRC: bootstrap over cases. Lesion = connected component "
        "of the expert mask (on the map grid by world coordinates, nearest neighbour), detected "
        "when the study is flagged and a voxel above threshold overlaps it. Baseline settings "
        "are fixed a priori (configs/default.yaml `evaluate.baseline`).",
        "",
    ]
    return "\n".join(lines)


def write_outputs(out: Path, metrics: dict[str, Any], cases: list[dict[str, Any]]) -> None:
    """roc.png, sensitivity_by_size.png, calibration.png and summary.md into `out`."""
    from screener.plots import calibration_plot, roc_plot, size_plot

    curves, aucs = {}, {}
    for name, skey in (("screener", "abnormality_score"), ("FLAIR baseline", "baseline_score")):
        sel = [c for c in cases if c["abnormal"] is not None
               and isinstance(c[skey], (int, float))]
        curves[name] = ([c["abnormal"] for c in sel], [float(c[skey]) for c in sel])
    aucs["screener"] = metrics["model"]["study"]["ranking"]["auroc"]["value"]
    aucs["FLAIR baseline"] = metrics["baseline"]["study"]["ranking"]["auroc"]["value"]
    roc_plot(out / "roc.png", curves, aucs)
    size_plot(out / "sensitivity_by_size.png",
              {"screener": metrics["model"]["lesion"]["by_diameter_mm"],
               "FLAIR baseline": metrics["baseline"]["lesion"]["by_diameter_mm"]})
    cal = metrics["model"]["study"]["calibration"]
    calibration_plot(out / "calibration.png", cal["bins"], cal["ece"], cal["n"])
    write_text_atomic(out / "summary.md", summary_markdown(metrics))
