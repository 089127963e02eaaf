"""Fuzz ingestion: thousands of mutated DICOM series, each in a sandboxed child; prints the tally.

Seeds: small series written by the project's DICOM writer (axial, oblique, implicit VR), two
NIfTI files (.nii float32, .nii.gz int16 with scaling) and, when present, files from
../shared/dicom-conformance (9 transfer syntaxes, enhanced multi-frame Siemens/Philips, Siemens
mosaic, GE diffusion). Mutations: see
screener/hardening/mutate.py. Each case must end parsed (sane volume), as a typed InputError,
or skipped; a study that forms must get an `indeterminate` report.json. Each case runs with a
wall-clock limit (child killed past it), an address-space limit and a peak-RSS limit.

Prints the mutation x outcome table (markdown), CPU/wall/RSS maxima and every failure with
what reproduces it (seed, case number). Exit status 1 when any case failed.

Usage: .venv/bin/python benchmarks/fuzz.py [--cases 3000] [--seed 0] [--time-limit 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFORMANCE = REPO.parent / "shared" / "dicom-conformance"


def main(argv: list[str] | None = None) -> int:
    import logging
    import warnings

    from screener.config import load_config
    from screener.hardening import fuzz

    warnings.simplefilter("ignore")  # pydicom/nibabel complain about every mutant
    logging.getLogger("nibabel").setLevel(logging.ERROR)

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-limit", type=float, default=10.0, help="wall seconds per case")
    p.add_argument("--rss-limit-mb", type=float, default=1536.0)
    p.add_argument("--no-conformance", action="store_true")
    a = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="screener-fuzz-seeds-") as tmp:
        seeds = fuzz.generated_seeds(Path(tmp)) + fuzz.nifti_seeds(Path(tmp) / "nifti")
        if not a.no_conformance and CONFORMANCE.is_dir():
            seeds += fuzz.conformance_seeds(CONFORMANCE)
        print(f"{len(seeds)} seeds ({', '.join(s.name for s in seeds)}); {a.cases} cases, "
              f"seed {a.seed}, {a.time_limit:g} s wall / {a.rss_limit_mb:g} MB RSS per case",
              file=sys.stderr)
        done = [0]
        t0 = time.perf_counter()

        def progress(r: fuzz.CaseResult) -> None:
            done[0] += 1
            if not r.ok:
                print(f"FAIL case {r.index} [{r.seed}] {r.kind}: {r.detail} -> {r.outcome}: "
                      f"{r.why}", file=sys.stderr)
            if done[0] % 250 == 0:
                print(f"  {done[0]}/{a.cases} cases, {time.perf_counter() - t0:.0f} s",
                      file=sys.stderr)

        tally = fuzz.run_fuzz(seeds, a.cases, load_config(), seed=a.seed,
                              time_limit_s=a.time_limit, rss_limit_mb=a.rss_limit_mb,
                              progress=progress)
    res = tally.results
    print(tally.table())
    print()
    print(f"{len(res)} cases in {tally.seconds:.0f} s; failures: {len(tally.failures)}; "
          f"max per case: {max(r.cpu_seconds for r in res):.2f} s CPU, "
          f"{max(r.seconds for r in res):.2f} s wall, {max(r.peak_rss_mb for r in res):.0f} MB "
          f"peak RSS; median {sorted(r.seconds for r in res)[len(res) // 2]:.3f} s wall")
    for r in tally.failures:
        print(f"- case {r.index} (seed {a.seed}) [{r.seed}] {r.kind}: {r.detail} -> {r.outcome}: "
              f"{r.why}")
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.exit(main())
