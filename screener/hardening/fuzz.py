"""Fuzz ingestion with mutated DICOM series, each case in a sandboxed child process.

Each file is first put through the service's C-STORE check (accepted, or refused with a
status). Then every case must end in an accepted outcome:
    parsed        at least one series built into a sane volume (finite affine, positive voxels,
                  the shape discovery announced)
    typed_error   the bad input was reported as a screener.errors.InputError (a per-file error
                  in discovery or an error from load_series), nothing built
    skipped       nothing in the case looked like DICOM (counted as skipped non-DICOM files)
and, when a study formed, its report from `screen_study` is `indeterminate` (these seeds are
too small to assess) with report.json written. Anything else is a failure:
    crash         an exception that is not an InputError escaped ingestion, QC or screening
    unsafe        a parsed volume with non-finite/absurd geometry, or a report that is not
                  indeterminate, or no report.json
    timeout       the case ran longer than the time limit (the child is killed and restarted)
    memory        peak resident memory of the case above the limit, or the allocation limit hit
    died          the child process died (segfault, abort)

The child runs with an address-space limit (RLIMIT_AS) above its own size, and its peak RSS
is reset before each case (/proc/self/clear_refs) and read after it (VmHWM).
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import shutil
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from screener.hardening.mutate import DICOM_KINDS, NIFTI_KINDS, Mutant, Seed, mutate

ACCEPTED = ("parsed", "typed_error", "skipped")
FAILURES = ("crash", "unsafe", "timeout", "memory", "died")
TARGET = "screener.hardening.fuzz:ingest_case"


# -- seeds ------------------------------------------------------------------------------------
def generated_seeds(workdir: Path) -> list[Seed]:
    """Small series written by the project's DICOM writer: axial, oblique, and implicit VR."""
    from screener.io.dicom_writer import write_mr_series

    rng = np.random.default_rng(7)
    seeds = []
    oblique = np.eye(4)
    a = np.radians(17.0)
    oblique[:3, :3] = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]) \
        @ np.diag([1.5, 1.5, 4.0])
    for name, affine, shape in (("gen-axial", np.diag([2.0, 2.0, 3.0, 1.0]), (24, 20, 6)),
                                ("gen-oblique", oblique, (16, 18, 5))):
        vol = rng.normal(300, 40, shape).clip(0)
        paths = write_mr_series(vol, affine, workdir / name, contrast="FLAIR")
        seeds.append(Seed(name, tuple((p.name, p.read_bytes()) for p in paths)))
    seeds.append(_implicit_copy(seeds[0], "gen-implicit"))
    return seeds


def nifti_seeds(workdir: Path) -> list[Seed]:
    """Single-file NIfTI studies (float32 .nii, int16 .nii.gz with scaling), mutated with
    NIFTI_KINDS (header fields, bytes, truncation)."""
    import nibabel as nib

    rng = np.random.default_rng(8)
    workdir.mkdir(parents=True, exist_ok=True)
    affine = np.array([[-2.0, 0, 0, 24], [0, 2.0, 0, -20], [0, 0, 3.0, -18], [0, 0, 0, 1]])
    seeds = []
    for name, dtype in (("sub-01_FLAIR.nii", np.float32), ("sub-01_T1w.nii.gz", np.int16)):
        img = nib.Nifti1Image(rng.normal(300, 40, (24, 20, 12)).astype(dtype), affine)
        img.header.set_qform(affine, 1)
        img.header.set_sform(affine, 1)
        if dtype == np.int16:
            img.header.set_slope_inter(0.5, 10.0)
        path = workdir / name
        nib.save(img, str(path))
        seeds.append(Seed(f"nifti-{name.split('.', 1)[1].replace('.', '')}",
                          ((name, path.read_bytes()),), NIFTI_KINDS))
    return seeds


def _implicit_copy(seed: Seed, name: str) -> Seed:
    """The same series re-encoded as implicit VR little endian."""
    from io import BytesIO

    import pydicom
    from pydicom.uid import ImplicitVRLittleEndian

    files = []
    for fname, data in seed.files:
        ds = pydicom.dcmread(BytesIO(data))
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        buf = BytesIO()
        ds.save_as(buf, implicit_vr=True, little_endian=True, enforce_file_format=True)
        files.append((fname, buf.getvalue()))
    return Seed(name, tuple(files))


# (label, folder under dicom-conformance, file glob, max files)
CONFORMANCE_SEEDS: tuple[tuple[str, str, str, int], ...] = (
    *((f"ts-{i}", "dcm_qa_ts/In", f"{i}.dcm", 1) for i in range(1, 10)),
    ("emri-le", "pydicom-data-emri/data_store/data", "emri_small.dcm", 1),
    ("emri-be", "pydicom-data-emri/data_store/data", "emri_small_big_endian.dcm", 1),
    ("emri-rle", "pydicom-data-emri/data_store/data", "emri_small_RLE.dcm", 1),
    ("emri-j2k", "pydicom-data-emri/data_store/data", "emri_small_jpeg_2k_lossless.dcm", 1),
    ("emri-jls", "pydicom-data-emri/data_store/data", "emri_small_jpeg_ls_lossless.dcm", 1),
    ("enh-siemens", "dcm_qa_enh/In/Siemens/XA10", "*.dcm", 4),
    ("enh-philips", "dcm_qa_enh/In/Philips", "*.dcm", 1),
    ("mosaic-ax", "dcm_qa/In/Orientation/ax/axasc35", "MR.*", 2),
    ("siemens-nih", "dcm_qa_nih/In/20180918Si/mr_0003", "*", 3),
    ("ge-dwi", "dcm_qa_ge/In/01_Ax_DWI_TENSOR_R2", "*", 6),
)


def conformance_seeds(root: Path) -> list[Seed]:
    """Seeds from ../shared/dicom-conformance (empty when it is absent)."""
    seeds = []
    for label, folder, pattern, limit in CONFORMANCE_SEEDS:
        files = sorted(p for p in (root / folder).glob(pattern) if p.is_file())[:limit]
        if files:
            seeds.append(Seed(label, tuple((p.name, p.read_bytes()) for p in files)))
    return seeds


def make_cases(seeds: Sequence[Seed], n: int, seed: int = 0) -> Iterator[tuple[int, Mutant]]:
    """`n` mutants, reproducible from (seed, case number). Cases cycle through seeds and
    mutation kinds so every combination appears; every fifth case is a random (possibly
    stacked) mutation."""
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        s = seeds[i % len(seeds)]
        kinds = list(s.kinds or DICOM_KINDS)
        kind = None if i % 5 == 4 else kinds[(i // len(seeds)) % len(kinds)]
        yield i, mutate(s, rng, kind)


# -- the fuzz target (runs in the child) -------------------------------------------------------
def _sane(vol: Any, info: Any) -> str:
    """Why a built volume is not trustworthy ('' when it is)."""
    aff = np.asarray(vol.affine, dtype=float)
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
        return "non-finite affine"
    if abs(np.linalg.det(aff[:3, :3])) < 1e-9:
        return "singular affine"
    vox = np.asarray(info.voxel_mm, dtype=float)
    if not np.all(np.isfinite(vox)) or np.any(vox <= 0):
        return f"voxel size {info.voxel_mm}"
    if tuple(vol.data.shape) != tuple(info.shape):
        return f"shape {vol.data.shape} != announced {info.shape}"
    if vol.data.dtype != np.float32:
        return f"dtype {vol.data.dtype}"
    if not np.all(np.isfinite(vol.data)):
        return "non-finite voxel values"
    return ""


def ingest_case(case_dir: str, config: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Discovery, QC, loading and (when a study forms) screening of one case.

    Returns {"outcome", "detail", "series": [...]} (see module docstring for outcomes).
    """
    from screener import qc
    from screener.errors import InputError
    from screener.io import find_studies, load_series

    _store_check(Path(case_dir))
    found = find_studies([case_dir], config)
    series_out: list[str] = []
    for study in found.studies:
        for s in study.series:
            qc.series_reasons(s, config)
            try:
                vol = load_series(s, config)
            except InputError as exc:
                if "out of memory" in str(exc):
                    return {"outcome": "memory", "detail": "allocation limit hit in load_series"}
                series_out.append(f"typed:{type(exc).__name__}")
                continue
            why = _sane(vol, s)
            if why:
                return {"outcome": "unsafe", "detail": f"parsed series: {why}"}
            series_out.append("parsed")
        why = _screen_indeterminate(study, config, Path(out_dir))
        if why:
            return {"outcome": "unsafe", "detail": why}
    if "parsed" in series_out:
        outcome = "parsed"
    elif series_out or found.errors:
        outcome = "typed_error"
    else:
        outcome = "skipped"
    kinds = sorted({e.kind for e in found.errors})
    return {"outcome": outcome, "detail": ",".join(kinds + sorted(set(series_out))),
            "series": series_out}


def _store_check(case_dir: Path) -> None:
    """What `screener serve` does with each file received by C-STORE: accept it or refuse it
    with a status (RefusedDataset); any other exception escapes and counts as a crash."""
    from screener.pacs.scp import RefusedDataset, check_dataset

    for f in sorted(case_dir.iterdir()):
        try:
            check_dataset(f.read_bytes(), "")
        except RefusedDataset:
            pass


def _screen_indeterminate(study: Any, config: dict[str, Any], out_dir: Path) -> str:
    """Screen the study when no model is needed (no series passes QC); '' when the report is
    the expected `indeterminate` with report.json on disk, else what is wrong."""
    import json

    from screener import qc
    from screener.pipeline import screen_study, study_dir_name

    reasons = [qc.series_reasons(s, config) for s in study.series]
    if any(not r for r in reasons) and not qc.study_reasons(study, reasons, config):
        return ""  # a series would go to the model: not screened here (no model in the fuzzer)
    report = screen_study(study, out_dir, config=config, model=None)
    path = out_dir / study_dir_name(study) / "report.json"
    if report.get("decision") != "indeterminate":
        return f"report decision {report.get('decision')!r} for an unassessable study"
    if not path.is_file() or json.loads(path.read_text())["decision"] != "indeterminate":
        return "report.json missing or different"
    return ""


# -- the sandbox (parent side) -----------------------------------------------------------------
def _resolve(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def _status_kb(field_name: str) -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        pass


def _child(conn: Any, target: str, config: dict[str, Any], headroom_bytes: int,
           warmup: str | None = None) -> None:
    """Child loop: import the target (and run it once on `warmup`, so lazy imports are not
    charged to the first case), cap the address space, run cases as they come."""
    import ctypes
    import resource
    import signal
    import warnings

    try:  # die with the parent (even on SIGKILL): no orphaned fuzz children
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    warnings.simplefilter("ignore")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    func = _resolve(target)
    importlib.import_module("screener.pipeline")  # import cost not charged to the first case
    if warmup:
        with tempfile.TemporaryDirectory() as out:
            try:
                func(warmup, config, out)
            except Exception:  # noqa: BLE001 - warm-up only
                pass
    limit = _status_kb("VmSize") * 1024 + headroom_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    conn.send(("ready", None))
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request is None:
            return
        case_dir, out_dir = request
        _reset_peak()
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            res = func(case_dir, config, out_dir)
        except MemoryError:
            res = {"outcome": "memory", "detail": "MemoryError (allocation limit)"}
        except BaseException as exc:  # noqa: BLE001 - exactly what the fuzzer looks for
            tb = traceback.extract_tb(exc.__traceback__)
            where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
            res = {"outcome": "crash", "detail": f"{type(exc).__name__}: {str(exc)[:200]} "
                                                 f"at {where}"}
        res["seconds"] = round(time.perf_counter() - t0, 3)
        res["cpu_seconds"] = round(time.process_time() - c0, 3)
        res["peak_rss_mb"] = round(_status_kb("VmHWM") / 1024, 1)
        conn.send(("done", res))


@dataclass
class CaseResult:
    """One fuzz case: what was done and how it ended."""

    index: int
    seed: str
    kind: str
    detail: str
    outcome: str
    why: str = ""
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    cpu_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome in ACCEPTED


class Sandbox:
    """A restartable child process that runs fuzz cases one at a time with limits.

    Args:
        config: full config handed to the target.
        time_limit_s: per-case wall-clock limit; the child is killed past it.
        rss_limit_mb: per-case peak resident memory allowed.
        headroom_mb: address space allowed above the child's size after imports (RLIMIT_AS).
        target: "module:function" called as target(case_dir, config, out_dir).
    """

    def __init__(self, config: dict[str, Any], *, time_limit_s: float = 10.0,
                 rss_limit_mb: float = 1536.0, headroom_mb: float = 3072.0,
                 target: str = TARGET, startup_s: float = 180.0,
                 warmup: Path | None = None) -> None:
        self.config = config
        self.time_limit_s = time_limit_s
        self.rss_limit_mb = rss_limit_mb
        self.headroom = int(headroom_mb * 1024 * 1024)
        self.target = target
        self.startup_s = startup_s
        self.warmup = str(warmup) if warmup else None
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._conn: Any = None
        self.restarts = 0

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_child, args=(child, self.target, self.config,
                                                      self.headroom, self.warmup), daemon=True)
        proc.start()
        child.close()
        try:
            if not parent.poll(self.startup_s):
                raise EOFError
            parent.recv()
        except (EOFError, OSError):
            proc.kill()
            raise RuntimeError("fuzz child did not start (target not importable?)") from None
        self._proc, self._conn = proc, parent

    def stop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.send(None)
            except OSError:
                pass
        if self._proc is not None:
            self._proc.join(2)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None
        self.restarts += 1

    def run(self, case_dir: Path, out_dir: Path) -> dict[str, Any]:
        """Run one case; returns the target's result with outcome, seconds, peak_rss_mb."""
        if self._proc is None or not self._proc.is_alive():
            self._start()
        t0 = time.perf_counter()
        self._conn.send((str(case_dir), str(out_dir)))
        if not self._conn.poll(self.time_limit_s):
            self._kill()
            return {"outcome": "timeout", "detail": f"over {self.time_limit_s:g} s",
                    "seconds": round(time.perf_counter() - t0, 3), "peak_rss_mb": 0.0}
        try:
            _, res = self._conn.recv()
        except (EOFError, OSError):
            code = self._proc.exitcode if self._proc is not None else None
            self._proc.join(5)
            code = self._proc.exitcode
            self._kill()
            return {"outcome": "died", "detail": f"child exit code {code}",
                    "seconds": round(time.perf_counter() - t0, 3), "peak_rss_mb": 0.0}
        if res["outcome"] in ACCEPTED and res.get("peak_rss_mb", 0) > self.rss_limit_mb:
            res = {**res, "outcome": "memory",
                   "detail": f"peak RSS {res['peak_rss_mb']} MB > {self.rss_limit_mb:g} MB"}
        return res

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Tally:
    """Outcomes of a fuzz run."""

    results: list[CaseResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def counts(self) -> Counter[str]:
        return Counter(r.outcome for r in self.results)

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.ok]

    def by_kind(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = {}
        for r in self.results:
            for k in r.kind.split("+"):
                out.setdefault(k, Counter())[r.outcome] += 1
        return out

    def table(self) -> str:
        """Markdown table: mutation kind x outcome, with totals."""
        cols = [c for c in (*ACCEPTED, *FAILURES)]
        lines = ["| mutation | cases | " + " | ".join(cols) + " |",
                 "|---|---:|" + "---:|" * len(cols)]
        for kind, c in sorted(self.by_kind().items()):
            lines.append(f"| {kind} | {sum(c.values())} | " + " | ".join(str(c.get(x, 0))
                                                                      for x in cols) + " |")
        total = self.counts
        lines.append(f"| **all cases** | {len(self.results)} | "
                     + " | ".join(str(total.get(x, 0)) for x in cols) + " |")
        return "\n".join(lines)


def run_fuzz(seeds: Sequence[Seed], n: int, config: dict[str, Any], *, seed: int = 0,
             time_limit_s: float = 10.0, rss_limit_mb: float = 1536.0,
             workdir: Path | None = None, progress: Any = None) -> Tally:
    """Run `n` mutants of `seeds` through `ingest_case` in a sandbox; returns the tally."""
    tally = Tally()
    t0 = time.perf_counter()
    own = workdir is None
    root = Path(tempfile.mkdtemp(prefix="screener-fuzz-")) if own else Path(workdir)  # type: ignore[arg-type]
    try:
        warm = root / "warmup"
        warm.mkdir(parents=True, exist_ok=True)
        for name, data in seeds[0].files:
            (warm / name).write_bytes(data)
        with Sandbox(config, time_limit_s=time_limit_s, rss_limit_mb=rss_limit_mb,
                     warmup=warm) as box:
            for i, m in make_cases(seeds, n, seed):
                case = root / f"case-{i:05d}"
                out = root / f"out-{i:05d}"
                case.mkdir(parents=True)
                for name, data in m.files:
                    (case / name).write_bytes(data)
                res = box.run(case, out)
                r = CaseResult(i, m.seed, m.kind, m.detail, res["outcome"], res.get("detail", ""),
                               res.get("seconds", 0.0), res.get("peak_rss_mb", 0.0),
                               res.get("cpu_seconds", 0.0))
                tally.results.append(r)
                shutil.rmtree(case, ignore_errors=True)
                shutil.rmtree(out, ignore_errors=True)
                if progress is not None:
                    progress(r)
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)
    tally.seconds = time.perf_counter() - t0
    return tally
