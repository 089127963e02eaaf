"""Read speed: a ~190-slice 256x256 3D MR series, our reader versus dcm2niix on the same folder.

Prints, from one run, the best of N repeats (warm file cache) for:
  - dcm2niix converting the folder to an uncompressed NIfTI (a subprocess: start-up included);
  - ours in-process: find_studies + load_series (imports already paid);
  - ours end to end: `screener inspect --nifti` as a subprocess (start-up + write included);
and the ratios ours / dcm2niix. Goal: in-process read within 1.5x of dcm2niix.

Usage: .venv/bin/python benchmarks/read_speed.py [--slices 190] [--repeats 5] [--workers 1]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=190)
    ap.add_argument("--matrix", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--workers", type=int, default=1, help="io.read_workers for load_series")
    args = ap.parse_args()
    if shutil.which("dcm2niix") is None:
        print("dcm2niix not installed: cannot compare", file=sys.stderr)
        return 2

    from screener.config import load_config
    from screener.io import find_studies, load_series
    from screener.io.dicom_writer import write_mr_series

    cfg = load_config()
    cfg["io"]["read_workers"] = args.workers
    with tempfile.TemporaryDirectory(prefix="screener-bench-") as tmp:
        src = Path(tmp) / "dicom"
        rng = np.random.default_rng(0)
        data = rng.normal(500, 100, (args.matrix, args.matrix, args.slices)).clip(0)
        aff = np.diag([-1.0, -1.0, 1.0, 1.0])
        write_mr_series(data, aff, src, contrast="T1")
        out = Path(tmp) / "out"
        out.mkdir()

        def dcm2niix() -> None:
            subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-f", "bench", "-o", str(out), str(src)],
                           check=True, capture_output=True)

        def ours() -> None:
            (series,) = find_studies([src], cfg).studies[0].series
            vol = load_series(series, cfg)
            assert vol.data.shape == data.shape

        def ours_cli() -> None:
            subprocess.run([sys.executable, "-m", "screener", "inspect", "--nifti", str(out / "cli"),
                            str(src)], check=True, capture_output=True)

        ours()  # warm the file cache and imports
        dcm2niix()
        # Interleaved so that load from other processes on the machine hits both alike.
        ref_times, our_times = [], []
        for _ in range(args.repeats):
            ref_times.append(_best(dcm2niix, 1))
            our_times.append(_best(ours, 1))
        t_ref, t_ours = min(ref_times), min(our_times)
        med_ref, med_ours = float(np.median(ref_times)), float(np.median(our_times))
        t_cli = _best(ours_cli, max(1, args.repeats // 4))
    print(f"series: {args.slices} slices of {args.matrix}x{args.matrix}, int16, explicit VR LE; "
          f"best of {args.repeats} interleaved; read_workers={args.workers}")
    print(f"dcm2niix (subprocess, writes .nii)         {t_ref:7.3f} s  (median {med_ref:.3f})")
    print(f"ours in-process (find_studies+load_series) {t_ours:7.3f} s  (median {med_ours:.3f})"
          f"   ratio {t_ours / t_ref:5.2f}x  (medians {med_ours / med_ref:.2f}x)")
    print(f"ours CLI (screener inspect --nifti)        {t_cli:7.3f} s   ratio {t_cli / t_ref:5.2f}x"
          "  (includes interpreter start, imports, float32 .nii.gz compression)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
