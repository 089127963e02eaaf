"""Wall time and peak memory of `screener screen` on a ~190-slice 3D T1 DICOM study.

Writes a 1 mm sagittal Colin27 series (190 slices of 256 x 256), then runs the whole command
(`python -m screener screen ...`, start-up included) several times, and, as the peer measured in
the same run, dcm2niix converting the same folder (reading it is the floor any screener pays).
Prints the median wall time, peak memory (the main process's peak RSS, and an upper bound for
the whole process tree, since `screen` forks a helper: the main peak plus the helpers' peak RSS
sampled every 50 ms), the stage breakdown from report.json, the time outside
those stages beside what importing torch and MONAI alone takes (in full, and as the screen
imports MONAI: without the optional modules it never uses, screener/monai_import.py), and ratios.
Goal (issue 4): <= 8 s including start-up and <= 2 GB on a 2-core CPU.

    .venv/bin/python benchmarks/screen_speed.py [--repeats 5] [--config FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _children_rss_mb(pid: int) -> float:
    """RSS of a process's descendants, summed."""
    import psutil

    try:
        procs = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def _run_exact(cmd: list[str]) -> tuple[float, float, float]:
    """Wall time (s), the process's own peak RSS (MB) and that plus its children's peak RSS
    (an upper bound for the tree at any moment)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children = 0.0
    while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        children = max(children, _children_rss_mb(proc.pid))
        time.sleep(0.05)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd[:3]} failed")
    own = usage.ru_maxrss / 1024.0
    return wall, own, own + children


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--config", default=None, help="screen config (e.g. model settings to time)")
    args = ap.parse_args()
    from screener.examples import write_example_study

    work = Path(tempfile.mkdtemp(prefix="screen-speed-"))
    try:
        study = work / "study"
        write_example_study(study, lesion=True, plane="sagittal", inplane_mm=1.0,
                            slice_thickness_mm=1.0)
        n = len(list(study.iterdir()))
        print(f"study: {n} slices (sagittal 1 mm Colin27 T1 with a lesion)")
        screen = [sys.executable, "-m", "screener", "screen", str(study), "-o", str(work / "out"),
                  "--device", args.device] + (["--config", args.config] if args.config else [])
        _run_exact(screen)  # warm the page cache and the weights file
        walls, rss, tree = [], [], []
        for _ in range(args.repeats):
            w, m, t = _run_exact(screen)
            walls.append(w)
            rss.append(m)
            tree.append(t)
        report = json.loads(next((work / "out").glob("*/report.json")).read_text())
        peer = []
        if shutil.which("dcm2niix"):
            for i in range(args.repeats):
                out = work / f"d{i}"
                out.mkdir()
                w, _, _ = _run_exact(["dcm2niix", "-z", "n", "-o", str(out), str(study)])
                peer.append(w)
        imports = [_run_exact([sys.executable, "-c", "import torch, monai"])[0]
                   for _ in range(args.repeats)]
        lean = [_run_exact([sys.executable, "-c", "import torch; from screener.monai_import import "
                            "import_monai; import_monai()"])[0] for _ in range(args.repeats)]
        med = statistics.median(walls)
        print(f"screener screen: median {med:.2f} s over {args.repeats} runs "
              f"(min {min(walls):.2f}, max {max(walls):.2f}); peak RSS {max(rss):.0f} MB, "
              f"with the helper process at most {max(tree):.0f} MB")
        print("stage breakdown (last run, s): " + json.dumps(report["timing_s"]))
        outside = walls[-1] - float(report["timing_s"]["total"])
        print(f"outside the stages (interpreter, imports, finding the study, model load; last run): "
              f"{outside:.2f} s; python -c 'import torch, monai' alone: median "
              f"{statistics.median(imports):.2f} s; torch and MONAI as the screen imports them "
              f"(screener.monai_import): median {statistics.median(lean):.2f} s")
        print(f"decision {report['decision']}, device {report['device']}")
        if peer:
            pm = statistics.median(peer)
            print(f"dcm2niix (peer, same folder): median {pm:.2f} s -> screen/dcm2niix = {med / pm:.1f}x")
        print(f"goal ratios: time {med / 8.0:.2f} of 8 s, memory (tree) {max(tree) / 2048.0:.2f} of 2 GB")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
