"""Sequence classification from headers and file names, rules in configs/series-rules.yaml.

The rules are an ordered list; the first rule whose conditions all hold gives the class, and a
series no rule matches is `other` (so it is never assessed as a structural contrast by accident).
See the comments at the top of the rules file for the condition vocabulary.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from screener.config import REPO_ROOT, ConfigError, read_yaml
from screener.types import SequenceClass, SeriesInfo

CONDITIONS = {"class", "text", "not_text", "image_type", "not_image_type", "scanning_sequence",
              "tr_ms", "te_ms", "ti_ms", "contrast", "source"}


@dataclass(frozen=True)
class Rule:
    """One validated rule: the class it gives and its conditions."""

    cls: SequenceClass
    conditions: dict[str, Any]
    text: re.Pattern[str] | None
    not_text: re.Pattern[str] | None


def _rule(i: int, raw: Any, path: Path) -> Rule:
    if not isinstance(raw, dict) or "class" not in raw:
        raise ConfigError(f"{path}: rule {i} must be a mapping with a 'class'")
    unknown = set(raw) - CONDITIONS
    if unknown:
        raise ConfigError(f"{path}: rule {i} has unknown key(s) {sorted(unknown)}")
    try:
        cls = SequenceClass(raw["class"])
    except ValueError:
        raise ConfigError(f"{path}: rule {i} class {raw['class']!r} is not one of "
                          f"{[c.value for c in SequenceClass]}") from None
    for key in ("tr_ms", "te_ms", "ti_ms"):
        if key in raw and (not isinstance(raw[key], list) or len(raw[key]) != 2):
            raise ConfigError(f"{path}: rule {i} {key} must be [min, max]")
    try:
        text = re.compile(raw["text"], re.I) if "text" in raw else None
        not_text = re.compile(raw["not_text"], re.I) if "not_text" in raw else None
    except re.error as exc:
        raise ConfigError(f"{path}: rule {i} has a bad regex: {exc}") from None
    return Rule(cls, dict(raw), text, not_text)


@functools.lru_cache(maxsize=8)
def load_rules(path: str | Path = "configs/series-rules.yaml") -> tuple[Rule, ...]:
    """Validated rules from a YAML file (relative paths are taken from the repo root)."""
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        p = REPO_ROOT / p
    data = read_yaml(p)
    rules = data.get("rules")
    if not isinstance(rules, list) or not rules:
        raise ConfigError(f"{p}: needs a non-empty 'rules' list")
    return tuple(_rule(i, r, p) for i, r in enumerate(rules))


def series_text(info: SeriesInfo) -> str:
    """The normalised text rules match against (descriptions or the NIfTI file name)."""
    h = info.headers
    parts = [info.series_description, str(h.get("ProtocolName", "")), str(h.get("SequenceName", ""))]
    if info.source == "nifti":
        parts.append(str(h.get("SeriesDescription", "")))
    text = " ".join(p for p in parts if p).lower()
    return " " + re.sub(r"[_\-./,;:()\[\]]+", " ", text) + " "


def _words(value: Any) -> set[str]:
    if value is None:
        return set()
    items = value if isinstance(value, (list, tuple)) else str(value).replace("\\", " ").split()
    return {str(v).strip().upper() for v in items}


def _num(h: dict[str, Any], key: str) -> float | None:
    v = h.get(key)
    if isinstance(v, (list, tuple)):
        v = v[0] if v else None
    try:
        return float(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _matches(rule: Rule, info: SeriesInfo, text: str) -> bool:
    c, h = rule.conditions, info.headers
    if "source" in c and info.source != c["source"]:
        return False
    if rule.text is not None and not rule.text.search(text):
        return False
    if rule.not_text is not None and rule.not_text.search(text):
        return False
    image_type = _words(h.get("ImageType"))
    if "image_type" in c and not image_type & {w.upper() for w in c["image_type"]}:
        return False
    if "not_image_type" in c and image_type & {w.upper() for w in c["not_image_type"]}:
        return False
    if "scanning_sequence" in c and not _words(h.get("ScanningSequence")) & set(c["scanning_sequence"]):
        return False
    for key, header in (("tr_ms", "RepetitionTime"), ("te_ms", "EchoTime"), ("ti_ms", "InversionTime")):
        if key in c:
            v = _num(h, header)
            if v is None or not c[key][0] <= v <= c[key][1]:
                return False
    if "contrast" in c:
        has = bool(h.get("ContrastBolusAgent") or h.get("ContrastBolusIngredient"))
        if has != bool(c["contrast"]):
            return False
    return True


def classify_series(info: SeriesInfo, rules: str | Path | tuple[Rule, ...] = "configs/series-rules.yaml"
                    ) -> SequenceClass:
    """The sequence class of a series from its headers / file name (first matching rule)."""
    ruleset = rules if isinstance(rules, tuple) else load_rules(str(rules))
    text = series_text(info)
    for rule in ruleset:
        if _matches(rule, info, text):
            return rule.cls
    return SequenceClass.OTHER
