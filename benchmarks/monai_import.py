"""What importing MONAI costs the screen, in full and through `screener.monai_import`.

Each measurement is a fresh interpreter that first imports what the screen imports anyway
(torch, SciPy's ndimage and spatial, nibabel, scikit-image's measure and morphology,
matplotlib's Agg canvas), then MONAI either with `import monai` (the peer: every optional
module MONAI's eager import pulls in) or with `screener.monai_import.import_monai()`. Runs
alternate, so a machine that slows down during the benchmark slows both alike. Prints the
medians of the MONAI part and their ratio.

    .venv/bin/python benchmarks/monai_import.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CODE = """
import json, sys, time
import torch, scipy.ndimage, scipy.spatial, nibabel, skimage.measure, skimage.morphology
import matplotlib
matplotlib.use("Agg")
from matplotlib.backends.backend_agg import FigureCanvasAgg
t = time.perf_counter()
if sys.argv[1] == "lean":
    from screener.monai_import import import_monai
    import_monai()
else:
    import monai
print(json.dumps({"s": time.perf_counter() - t,
                  "modules": sorted(m for m in ("scipy.signal", "scipy.stats", "matplotlib.pyplot")
                                    if m in sys.modules)}))
"""


def _once(kind: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CODE, kind], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    times: dict[str, list[float]] = {"full": [], "lean": []}
    modules: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        for kind in ("full", "lean"):
            got = _once(kind)
            times[kind].append(got["s"])
            modules[kind] = got["modules"]
    for kind, label in (("full", "import monai (peer)"), ("lean", "import_monai()")):
        t = times[kind]
        print(f"{label}: median {statistics.median(t):.2f} s over {len(t)} runs "
              f"(min {min(t):.2f}, max {max(t):.2f}); of the optional modules loaded: "
              f"{', '.join(modules[kind]) or 'none'}")
    ratio = statistics.median(times["lean"]) / statistics.median(times["full"])
    print(f"ratio import_monai / import monai: {ratio:.2f} "
          f"(saves {statistics.median(times['full']) - statistics.median(times['lean']):.2f} s)")


if __name__ == "__main__":
    main()
