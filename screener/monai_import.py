"""Import MONAI without the optional modules the screener never uses.

`import monai` (which any `from monai.x import y` runs first) imports every MONAI submodule
eagerly. Two of them pull in large optional dependencies through MONAI's `optional_import`:
`monai.data.ultrasound_confidence_map` imports `scipy.signal` (and with it `scipy.stats`,
`scipy.interpolate`, `scipy.optimize`) for its Hilbert transform, and `monai.utils.jupyter_utils`
imports `matplotlib.pyplot` for its notebook plots. Nothing the screener calls uses them. On this
2-core machine, on top of what the screen imports anyway (torch, SciPy's ndimage, scikit-image,
nibabel, matplotlib's Agg canvas), MONAI took 1.95 s with them and 0.83 s without (medians of 5
alternating runs, `benchmarks/monai_import.py`, 2026-12-03).

`import_monai()` imports MONAI once with those modules marked absent (``None`` in
``sys.modules``, which makes Python raise ImportError for them at once), so MONAI's
`optional_import` records them as unavailable for its ultrasound and notebook helpers only,
then removes the marks: any later `import scipy.signal` or `import matplotlib.pyplot` (the
evaluation's plots) loads the real module as usual. If a MONAI release ever imports one of them
unconditionally, the first attempt fails and MONAI is imported again without the marks, so the
worst case is the old start-up time, never a failure.

Every screener function that imports MONAI calls this first; once MONAI is loaded it is a
dictionary lookup. Threads (dask workers, the PACS service) are safe among themselves: one
imports, the others wait for it. While that one import runs (about a second, once per process),
another thread importing `scipy.signal` or `matplotlib.pyplot` for the first time would get an
ImportError; nothing in the screener does.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from types import ModuleType

log = logging.getLogger(__name__)

# Optional dependencies of MONAI's eager import that no screener code path uses through MONAI.
UNUSED_BY_SCREENER = ("scipy.signal", "matplotlib.pyplot")
_LOCK = threading.Lock()


def _purge(prefix: str) -> None:
    for name in [n for n in sys.modules if n == prefix or n.startswith(prefix + ".")]:
        del sys.modules[name]


def import_monai(skip: tuple[str, ...] = UNUSED_BY_SCREENER) -> ModuleType:
    """Import MONAI (once per process) without importing the modules in `skip`.

    Modules of `skip` that are already imported are left alone (MONAI then uses them as usual).
    Returns the `monai` package.
    """
    if "monai" in sys.modules:  # import_module waits while another thread still imports it
        return importlib.import_module("monai")
    with _LOCK:  # one thread marks and imports; the others wait here, then find it loaded
        if "monai" in sys.modules:
            return importlib.import_module("monai")
        marked = [name for name in skip if name not in sys.modules]
        for name in marked:
            sys.modules[name] = None  # type: ignore[assignment]  # import system: ImportError
        try:
            return importlib.import_module("monai")
        except ImportError as exc:
            log.warning("MONAI needed a module imported without it (%s); importing it in full", exc)
            _purge("monai")
            for name in marked:
                sys.modules.pop(name, None)
            marked = []
            return importlib.import_module("monai")
        finally:
            for name in marked:
                if sys.modules.get(name, False) is None:
                    del sys.modules[name]
