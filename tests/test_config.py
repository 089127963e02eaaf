from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from screener.config import ConfigError, load_config, section


@dataclass(frozen=True)
class Demo:
    threshold: float = 0.5
    name: str = "x"
    sizes: list[int] = field(default_factory=list)
    limit: float | None = None


def test_section_defaults_and_types():
    d = section({"demo": {"threshold": 1, "sizes": [1, 2]}}, "demo", Demo)
    assert d.threshold == 1.0 and isinstance(d.threshold, float)
    assert d.sizes == [1, 2] and d.name == "x" and d.limit is None


@pytest.mark.parametrize("bad", [{"thresh": 1}, {"threshold": "high"}, {"sizes": [1, "a"]},
                                 {"threshold": True}])
def test_section_rejects_unknown_keys_and_wrong_types(bad):
    with pytest.raises(ConfigError):
        section({"demo": bad}, "demo", Demo)


def test_user_file_merges_over_defaults(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("io:\n  max_zip_members: 7\n")
    cfg = load_config(f)
    assert cfg["io"]["max_zip_members"] == 7
    assert cfg["io"]["max_voxels_per_series"] > 0  # untouched default kept


def test_missing_or_malformed_config(tmp_path):
    with pytest.raises(ConfigError):
        load_config(tmp_path / "nope.yaml")
    f = tmp_path / "bad.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError):
        load_config(f)
