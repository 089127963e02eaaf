"""Fuzzing ingestion: mutated series from generated studies and ../shared/dicom-conformance.

Every case must end in a parsed (sane) series, a typed InputError or skipped non-DICOM, and a
study that forms gets an `indeterminate` report.json; no crash, no case over 10 s of CPU (the
child is killed past 30 s of wall time: this machine's cores are shared with training, so wall
time is not a measure of the case), peak RSS of each case under 1.5 GB (each case runs in a
sandboxed child with RLIMIT_AS). The first test
shows the sandbox itself catches crashes, hangs, memory hogs and dying children.
`benchmarks/fuzz.py` runs thousands of cases and prints the tally.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from screener.config import load_config
from screener.hardening import fuzz
from screener.hardening.mutate import DICOM_KINDS, NIFTI_KINDS

WALL_LIMIT_S = 30.0
CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "dicom-conformance"


def test_sandbox_classifies_bad_targets_and_recovers(tmp_path):
    box = fuzz.Sandbox(load_config(), time_limit_s=3.0, rss_limit_mb=300.0, headroom_mb=2048.0,
                       target="fuzz_targets:behave")
    got = {}
    with box:
        for what in ("ok", "crash", "hang", "ok", "hog", "touch", "die", "ok"):
            case = tmp_path / what
            case.mkdir(exist_ok=True)
            got.setdefault(what, []).append(box.run(case, tmp_path / "out")["outcome"])
    assert got == {"ok": ["parsed"] * 3, "crash": ["crash"], "hang": ["timeout"],
                   "hog": ["memory"], "touch": ["memory"], "die": ["died"]}
    assert box.restarts == 2  # after the hang and after the abort


def _check(tally: fuzz.Tally, n: int, kinds: tuple[str, ...] = DICOM_KINDS) -> None:
    print("\n" + tally.table())
    assert len(tally.results) == n
    assert not tally.failures, "\n".join(
        f"case {r.index} ({r.seed}, {r.kind}: {r.detail}) -> {r.outcome}: {r.why}"
        for r in tally.failures[:20])
    assert set(tally.by_kind()) == set(kinds)
    counts = tally.counts
    assert counts["parsed"] > 0 and counts["typed_error"] > 0
    assert max(r.cpu_seconds for r in tally.results) < 10.0
    assert max(r.peak_rss_mb for r in tally.results) < 1536.0


def test_fuzz_generated_series(tmp_path):
    seeds = fuzz.generated_seeds(tmp_path / "seeds")
    tally = fuzz.run_fuzz(seeds, 150, load_config(), seed=11, workdir=tmp_path / "cases",
                          time_limit_s=WALL_LIMIT_S)
    _check(tally, 150)


def test_fuzz_conformance_files(tmp_path):
    if not CONFORMANCE.is_dir():
        pytest.skip(f"{CONFORMANCE} not available")
    seeds = fuzz.conformance_seeds(CONFORMANCE)
    assert len(seeds) >= 15
    tally = fuzz.run_fuzz(seeds, 150, load_config(), seed=12, workdir=tmp_path / "cases",
                          time_limit_s=WALL_LIMIT_S)
    _check(tally, 150)
    assert {r.seed for r in tally.results} == {s.name for s in seeds}


def test_fuzz_nifti_files(tmp_path):
    seeds = fuzz.nifti_seeds(tmp_path / "seeds")
    tally = fuzz.run_fuzz(seeds, 60, load_config(), seed=13, workdir=tmp_path / "cases",
                          time_limit_s=WALL_LIMIT_S)
    _check(tally, 60, NIFTI_KINDS)


def test_cases_are_reproducible(tmp_path):
    seeds = fuzz.generated_seeds(tmp_path)
    a = [(m.kind, m.detail, m.files) for _, m in fuzz.make_cases(seeds, 25, seed=3)]
    b = [(m.kind, m.detail, m.files) for _, m in fuzz.make_cases(seeds, 25, seed=3)]
    assert a == b
    assert len({files for _, _, files in a}) == 25  # every case differs


def test_byte_flip_survives_an_emptied_file():
    # benchmarks/fuzz.py --cases 20000 --seed 2 stopped here: a stacked mutation truncated a file
    # to 0 bytes, then the byte flip indexed into it (IndexError in the harness, not the screener).
    import numpy as np

    from screener.hardening.mutate import m_byte_flip

    files = [("a.dcm", b""), ("b.dcm", b"\x00" * 200)]
    for seed in range(20):
        detail, out = m_byte_flip(np.random.default_rng(seed), files)
        assert len(out) == 2 and out[0] == ("a.dcm", b"") and len(out[1][1]) == 200, detail
