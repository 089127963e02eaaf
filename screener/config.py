"""One config system: YAML files in configs/, validated into typed dataclasses.

`configs/default.yaml` holds every setting with its default. A user file given with
`--config` is merged over it (nested mappings merge key by key). Each stage owns a frozen
dataclass for its section and reads it with `section()`, which rejects unknown keys and
wrong types, so a typo in a config file is an error, not a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


def repo_path(path: str | Path) -> Path:
    """`path` as given when absolute, else relative to the repository (not the working
    directory): weights, label maps and run folders named in configs."""
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


T = TypeVar("T")


class ConfigError(ValueError):
    """A config file is missing, malformed, or holds unknown keys or wrong types."""


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; raise ConfigError with the path on any problem."""
    p = Path(path)
    try:
        loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {p}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {p} must hold a mapping at top level")
    return loaded


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """Defaults from configs/default.yaml, with the user's file (if any) merged over them."""
    cfg = read_yaml(DEFAULT_CONFIG)
    if path is not None:
        cfg = _merge(cfg, read_yaml(path))
    return cfg


def _check_type(name: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in args:
            try:
                return _check_type(name, value, arg)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{name}: {value!r} matches none of {hint}")
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"{name}: expected null, got {value!r}")
        return None
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_check_type(f"{name}[{i}]", v, inner) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true/false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        return from_mapping(hint, value, name)
    return value


def from_mapping(cls: type[T], data: dict[str, Any], name: str = "") -> T:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and wrong types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{name or cls.__name__}: unknown key(s) {sorted(unknown)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _check_type(f"{name}.{k}" if name else k, v, hints[k]) for k, v in data.items()}
    return cls(**kwargs)


def section(cfg: dict[str, Any], key: str, cls: type[T]) -> T:
    """The typed config section `key` (defaults from the dataclass where the file is silent)."""
    data = cfg.get(key) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"section {key!r} must be a mapping")
    return from_mapping(cls, data, key)
