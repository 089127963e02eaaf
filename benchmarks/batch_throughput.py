"""Batch throughput: studies per hour with 1 and 2 local worker processes, as a ratio.

Both runs screen the same studies with the real pipeline on this machine, each into a fresh
output folder, and include each worker's one model load (what a user waits for). The ratio
2-worker / 1-worker says how much a second process buys here; on a 2-core machine shared with
other jobs, expect well below 2.

    .venv/bin/python benchmarks/batch_throughput.py [ROOT_OR_MANIFEST ...] [--workers 1 2]

Default input: ../shared/realdata-dev/cases.csv (8 real studies). Results also go to
--json FILE when given.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def measure(inputs: list[str], workers: int, config: dict) -> dict:
    """One timed batch run into a fresh folder."""
    from screener.batch import run_batch

    out = Path(tempfile.mkdtemp(prefix=f"throughput-w{workers}-"))
    try:
        t0 = time.perf_counter()
        res = run_batch(inputs, out, config, workers=workers, device="cpu")
        seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)
    n = res.summary["studies"]
    return {"workers": workers, "studies": n, "seconds": round(seconds, 1),
            "studies_per_hour": round(3600 * n / seconds, 1), "counts": res.summary["counts"]}


def main(argv: list[str] | None = None) -> int:
    from screener.config import load_config

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", default=[str(REPO.parent / "shared/realdata-dev/cases.csv")])
    p.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    p.add_argument("--config", help="YAML merged over configs/default.yaml")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    for i in args.inputs:
        if not Path(i).exists():
            print(f"input not found: {i}", file=sys.stderr)
            return 2
    config = load_config(args.config)
    config["batch"] = dict(config.get("batch") or {}, progress=False)
    rows = [measure(args.inputs, w, config) for w in args.workers]
    base = rows[0]["studies_per_hour"]
    print(f"{'workers':>7} {'studies':>7} {'seconds':>8} {'studies/h':>10} {'ratio':>6}  outcomes")
    for r in rows:
        r["ratio_to_first"] = round(r["studies_per_hour"] / base, 2) if base else None
        print(f"{r['workers']:>7} {r['studies']:>7} {r['seconds']:>8} {r['studies_per_hour']:>10} "
              f"{r['ratio_to_first']:>6}  {r['counts']}")
    if any(r["counts"]["failed"] for r in rows):
        print("note: some studies failed; the rate counts them as processed", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
