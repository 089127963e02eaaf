"""MONAI imported without the optional modules the screener never uses (screener.monai_import).

Each check runs in a fresh interpreter: in the test process MONAI is long imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SKIPPED = ["matplotlib.pyplot", "scipy.signal", "scipy.stats"]


def _run(code: str, timeout: float = 300) -> dict:
    """Runs `code` in a fresh interpreter; its last stdout line (JSON) plus its stderr."""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=timeout)
    assert run.returncode == 0, run.stderr[-3000:]
    return {**json.loads(run.stdout.strip().splitlines()[-1]), "stderr": run.stderr}


LOADED = f"sorted(m for m in {SKIPPED!r} if m in sys.modules)"


def test_monai_works_without_them_and_they_import_normally_afterwards():
    got = _run(f"""
import json, sys
from screener.monai_import import import_monai
import_monai()
from monai.networks.nets import UNet
from monai.transforms import ScaleIntensityRangePercentiles, SpatialResample
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
import torch
net = UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,))
out = sliding_window_inference(torch.zeros(1, 1, 16, 16, 16), (8, 8, 8), 1, net)
before = {LOADED}
import scipy.signal, matplotlib.pyplot
print(json.dumps({{"before": before, "shape": list(out.shape),
                  "hilbert": callable(scipy.signal.hilbert), "plot": callable(matplotlib.pyplot.plot),
                  "marks_left": [m for m in {SKIPPED!r} if m in sys.modules and sys.modules[m] is None]}}))
""")
    assert "importing it in full" not in got.pop("stderr")
    assert got == {"before": [], "shape": [1, 2, 16, 16, 16], "hilbert": True, "plot": True,
                   "marks_left": []}


def test_a_module_already_imported_is_left_to_monai():
    got = _run("""
import json
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from screener.monai_import import import_monai
import_monai()
import monai.utils.jupyter_utils as ju
print(json.dumps({"same": ju.plt is plt}))
""")
    got.pop("stderr")
    assert got == {"same": True}


def test_monai_needing_a_skipped_module_is_imported_in_full():
    """Were a MONAI release to import a skipped module unconditionally, the screener would fall
    back to the full import (slower start, same MONAI), not fail: simulated by skipping one of
    MONAI's own modules, which its package imports without optional_import."""
    got = _run("""
import json, logging, sys
logging.basicConfig(level=logging.WARNING)
from screener.monai_import import import_monai
import_monai(skip=("monai.utils.jupyter_utils", "scipy.signal"))
import monai.utils.jupyter_utils as ju
from monai.networks.nets import UNet
print(json.dumps({"real": ju is not None and hasattr(ju, "plot_metric_graph"),
                  "signal": "scipy.signal" in sys.modules,
                  "marks": [m for m, v in sys.modules.items() if v is None and m.startswith(("monai", "scipy.signal"))]}))
""")
    assert "importing it in full" in got.pop("stderr")
    assert got == {"real": True, "signal": True, "marks": []}


def test_screen_command_never_imports_them(tmp_path: Path):
    """The whole `screen` command (its main process) runs without the skipped modules: what
    `import_monai` leaves out is not needed later on the screen path either."""
    from screener.examples import write_example_study

    write_example_study(tmp_path / "d", lesion=False, inplane_mm=2.0, slice_thickness_mm=4.0)
    got = _run(f"""
import json, sys
from screener.cli import main
rc = main(["screen", {str(tmp_path / "d")!r}, "-o", {str(tmp_path / "o")!r}, "--device", "cpu"])
print(json.dumps({{"rc": rc, "loaded": {LOADED}}}))
""", timeout=600)
    got.pop("stderr")
    assert got == {"rc": 0, "loaded": []}
    assert list((tmp_path / "o").glob("*/report.json"))


def test_threads_importing_at_once_all_get_the_whole_of_monai():
    got = _run("""
import json, sys, threading
from screener.monai_import import import_monai
seen = []
def work():
    m = import_monai()
    from monai.networks.nets import UNet
    from monai.inferers import sliding_window_inference
    seen.append((m is sys.modules["monai"], callable(UNet), callable(sliding_window_inference)))
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"seen": seen, "marks": [m for m, v in sys.modules.items() if v is None and m.startswith(("scipy.signal", "matplotlib.pyplot"))]}))
""")
    assert "importing it in full" not in got.pop("stderr")
    assert got == {"seen": [[True, True, True]] * 4, "marks": []}
