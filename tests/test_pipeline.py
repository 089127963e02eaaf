"""`screener screen` end to end on DICOM studies the tests write from a real head (Colin27).

Fail-closed cases (each indeterminate reason by its own input) and the geometry of findings,
SR and SEG. Studies are small (2 mm in-plane) to keep the suite fast on two CPU cores.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from screener.config import load_config
from screener.examples import COLIN27, LESION_CENTRE_RAS, ExampleLesion, write_example_study
from screener.io import find_studies
from screener.io.dicom_writer import StudyIdentity, write_mr_series

pytestmark = pytest.mark.skipif(not COLIN27.exists(), reason="Colin27 (mricron-data) not installed")


@pytest.fixture(scope="module")
def config():
    return load_config()


@pytest.fixture(scope="module")
def model(config):
    import torch

    torch.set_num_threads(2)
    from screener.pipeline import load_model

    return load_model(config, "cpu")


def _screen(folder: Path, out: Path, config, model) -> dict:
    from screener.pipeline import screen_study

    found = find_studies([folder], config)
    assert len(found.studies) == 1, found.errors
    return screen_study(found.studies[0], out, config=config, model=model)


def _codes(report: dict) -> set[str]:
    reasons = list(report["reasons"]) + [r for s in report["series"] for r in s["why_not_used"]]
    return {r.split(":", 1)[0] for r in reasons}


@pytest.mark.parametrize("case,extra,expected", [
    ("ct", {"Modality": "CT"}, "not_mr"),
    ("chest", {"BodyPartExamined": "CHEST"}, "body_part_not_head"),
    ("localizer", {"SeriesDescription": "localizer", "ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]},
     "non_structural_sequence"),
    ("dwi", {"SeriesDescription": "ep2d_diff DWI b1000", "ImageType": ["ORIGINAL", "PRIMARY", "DIFFUSION"]},
     "non_structural_sequence"),
])
def test_header_reasons_make_indeterminate(tmp_path, config, model, case, extra, expected):
    data = np.random.default_rng(0).normal(100, 10, (64, 64, 40)).astype(np.float32)
    aff = np.diag([3.0, 3.0, 3.0, 1.0])
    write_mr_series(data, aff, tmp_path / case, extra=extra)
    rep = _screen(tmp_path / case, tmp_path / "out", config, model)
    assert rep["decision"] == "indeterminate"
    assert expected in _codes(rep), rep["reasons"]
    assert rep["confidence"] is None


def test_missing_slices_thick_slices_and_coverage(tmp_path, config, model):
    # missing slices: one file of a contiguous series removed
    files = write_example_study(tmp_path / "gap", lesion=False, inplane_mm=2.0, slice_thickness_mm=4.0)
    files[len(files) // 2].unlink()
    rep = _screen(tmp_path / "gap", tmp_path / "out", config, model)
    assert rep["decision"] == "indeterminate" and "missing_slices" in _codes(rep), rep
    # slice thickness above the configured limit (7 mm)
    write_example_study(tmp_path / "thick", lesion=False, inplane_mm=2.0, slice_thickness_mm=8.0)
    rep = _screen(tmp_path / "thick", tmp_path / "out", config, model)
    assert rep["decision"] == "indeterminate" and "thickness_above_limit" in _codes(rep), rep
    # too little coverage: a slab of 8 slices
    files = write_example_study(tmp_path / "slab", lesion=False, inplane_mm=2.0, slice_thickness_mm=4.0)
    for f in files[:20] + files[28:]:
        f.unlink()
    rep = _screen(tmp_path / "slab", tmp_path / "out", config, model)
    assert rep["decision"] == "indeterminate"
    assert _codes(rep) & {"too_few_slices", "coverage_too_small"}, rep


def test_pure_noise_is_not_negative(tmp_path, config, model):
    rng = np.random.default_rng(1)
    data = np.abs(rng.normal(0, 50, (96, 110, 45))).astype(np.float32)
    aff = np.diag([2.0, 2.0, 3.0, 1.0])
    aff[:3, 3] = [-96, -110, -60]
    write_mr_series(data, aff, tmp_path / "noise", contrast="T1")
    rep = _screen(tmp_path / "noise", tmp_path / "out", config, model)
    assert rep["decision"] == "indeterminate", rep["reasons"]
    assert _codes(rep) & {"brain_volume_implausible", "severe_noise", "brain_cut_off"}, rep


def test_report_contract_and_outputs(tmp_path, config, model):
    write_example_study(tmp_path / "s", lesion=True, inplane_mm=2.0, slice_thickness_mm=4.0,
                        identity=StudyIdentity(patient_name="Recognisable^Name"))
    rep = _screen(tmp_path / "s", tmp_path / "out", config, model)
    folder = next((tmp_path / "out").iterdir())
    on_disk = json.loads((folder / "report.json").read_text())
    assert on_disk == rep
    for key in ("schema_version", "study", "decision", "abnormality_score", "confidence", "reasons",
                "series", "findings", "resolution_limits", "model", "device", "timing_s", "outputs"):
        assert key in rep
    assert rep["model"]["weights_sha256"] and rep["device"] == "cpu"
    assert rep["model"]["precision"] in ("bfloat16", "float32")
    assert "function" in rep["resolution_limits"]["statement"]
    assert (folder / rep["outputs"]["anomaly_map"]).exists()
    assert "Recognisable" not in (folder / "report.json").read_text()
    import nibabel as nib

    amap = nib.load(str(folder / "anomaly_map.nii.gz"))
    series = rep["series"][0]
    assert list(amap.shape) == series["shape"]
    vol = find_studies([tmp_path / "s"], config).studies[0].series[0]
    np.testing.assert_allclose(amap.affine, vol.affine, atol=1e-3)
    # The model's brain mask rides along on the same grid (evaluate's baseline masks with it).
    bmask = nib.load(str(folder / rep["outputs"]["brain_mask"]))
    assert bmask.shape == amap.shape
    np.testing.assert_allclose(bmask.affine, amap.affine, atol=1e-6)
    voxel_ml = abs(np.linalg.det(bmask.affine[:3, :3])) / 1000.0
    assert set(np.unique(bmask.get_fdata())) <= {0.0, 1.0}
    assert 600.0 < bmask.get_fdata().sum() * voxel_ml < 2200.0  # what QC accepted as brain


def test_calibration_or_benchmark_of_other_weights_or_settings_is_not_used(tmp_path, config,
                                                                           model):
    """An operating point fitted on other weights or score settings (or naming none) gives no
    decision, and a benchmark table measured on other weights or settings gives no resolution
    claim: the study cannot be `negative`. The shipped files, bound to the shipped weights and
    default settings, are used (the control)."""
    import copy
    import dataclasses
    import shutil

    write_example_study(tmp_path / "s", lesion=False, inplane_mm=2.0, slice_thickness_mm=4.0)
    shipped = Path(model.weights_dir)
    cal = json.loads((shipped / "calibration.json").read_text())
    bench = json.loads((shipped / "benchmark.json").read_text())
    assert cal["weights_sha256"] == model.weights_sha256  # the shipped pair is bound
    assert bench["model"]["weights_sha256"] == model.weights_sha256
    assert cal["settings"] == bench["model"]["settings"]

    from screener.outputs import _calibration_and_benchmark

    def bundle_with(name, cal_changes=(), bench_changes=()):
        """The loaded model pointed at a copy of the shipped files with these changes."""
        wdir = tmp_path / name
        wdir.mkdir()
        c, b = copy.deepcopy(cal), copy.deepcopy(bench)
        for key, value in cal_changes:
            if value is None:
                del c[key]  # as in a file written before calibrations named weights and settings
            else:
                c[key] = value
        for key, value in bench_changes:
            b["model"][key] = value
        (wdir / "calibration.json").write_text(json.dumps(c))
        (wdir / "benchmark.json").write_text(json.dumps(b))
        shutil.copytree(shipped / "configs", wdir / "configs")
        return dataclasses.replace(model, weights_dir=wdir)

    def files_with(name, cal_changes=(), bench_changes=(), cfg=config):
        """What the screen takes from such files: (calibration, benchmark, reasons, why)."""
        return _calibration_and_benchmark(bundle_with(name, cal_changes, bench_changes), cfg)

    def screen_with(name, cal_changes=(), bench_changes=(), cfg=config):
        return _screen(tmp_path / "s", tmp_path / f"out-{name}", cfg,
                       bundle_with(name, cal_changes, bench_changes))

    other_settings = copy.deepcopy(cal["settings"])
    other_settings["model"]["grid_offsets_mm"] = [[1.0, 1.0, 1.0]]
    rescaled = copy.deepcopy(config)
    rescaled["decide"]["score_volume_scale_ml"] = 2.0
    got = files_with("bound")
    assert got[0] is not None and got[1] is not None and got[2:] == ([], None)
    for name, changes, cfg in (("other", [("weights_sha256", "0" * 64)], config),
                               ("unnamed", [("weights_sha256", None)], config),
                               ("no-settings", [("settings", None)], config),
                               ("settings", [("settings", other_settings)], config),
                               ("screen-settings", [], rescaled)):
        c, _, reasons, _ = files_with(name, changes, cfg=cfg)
        assert c is None and len(reasons) == 1, name
        assert reasons[0].startswith("calibration_mismatch"), name
    for name, changes, why in (("bench", [("weights_sha256", "0" * 64)], "other weights"),
                               ("bench-settings", [("settings", other_settings)],
                                "other score settings")):
        c, bch, reasons, bench_reason = files_with(name, bench_changes=changes)
        assert c is not None and bch is None and reasons == [] and why in bench_reason

    # End to end: the control, a site config that changes a score setting (no operating
    # point), and, at threshold 1 (nothing flagged, so only the resolution claim stands between
    # the study and `negative`), a benchmark of other settings (no claim).
    ok = screen_with("e2e-bound")
    assert "calibration_mismatch" not in _codes(ok) and ok["confidence"] is not None
    rep = screen_with("e2e-screen-settings", cfg=rescaled)
    assert rep["decision"] == "indeterminate" and rep["confidence"] is None
    assert "calibration_mismatch" in _codes(rep), rep["reasons"]
    rep = screen_with("e2e-bench", [("threshold", 1.0)], [("settings", other_settings)])
    assert rep["decision"] == "indeterminate", rep["reasons"]
    assert "no_resolution_claim" in _codes(rep)
    assert rep["resolution_limits"]["min_detectable_diameter_mm"] is None
    assert "other score settings" in rep["resolution_limits"]["no_claim_reason"]


KNOWN_GAP = ("model screener-synth-v1 0.7.1 (issue 3): ")


@pytest.mark.parametrize("plane,thickness", [
    ("axial", 5.0), ("sagittal", 2.0),
    # Oblique: the network runs only over the head's box (infer.head_box); before that, tiles of
    # air around the slab grew "brain" to the slab faces and QC called the brain cut off.
    ("oblique", 3.0),
])
def test_lesion_found_where_it_is(tmp_path, config, model, plane, thickness):
    lesion = ExampleLesion(diameter_mm=30.0)
    # an oblique slab needs a larger field of view to hold the whole brain (else: brain_cut_off)
    fov = (220.0, 240.0, 220.0) if plane == "oblique" else (200.0, 230.0, 180.0)
    write_example_study(tmp_path / plane, lesion=True, plane=plane, inplane_mm=1.5,
                        slice_thickness_mm=thickness, lesion_spec=lesion, fov_mm=fov)
    rep = _screen(tmp_path / plane, tmp_path / "out", config, model)
    assert rep["decision"] != "negative"  # fail closed whatever the model does
    assert rep["decision"] == "flagged", rep["reasons"]
    near = [f for f in rep["findings"]
            if np.linalg.norm(np.array(f["centroid_ras_mm"]) - LESION_CENTRE_RAS) < 8.0]
    assert near, [f["centroid_ras_mm"] for f in rep["findings"]]


@pytest.mark.xfail(strict=True, reason=KNOWN_GAP + (
    "at the 98% target sensitivity its calibrated operating threshold is 0, so every assessable "
    "study is flagged (synthetic specificity 0/250)"))
def test_normal_head_is_not_flagged(tmp_path, config, model):
    write_example_study(tmp_path / "n", lesion=False, inplane_mm=1.5, slice_thickness_mm=3.0)
    rep = _screen(tmp_path / "n", tmp_path / "out", config, model)
    assert rep["decision"] == "negative", (rep["reasons"], rep["abnormality_score"])
    assert rep["resolution_limits"]["min_detectable_diameter_mm"] is not None


def test_sr_and_seg_reference_the_source(tmp_path, config, model):
    import highdicom as hd
    import pydicom

    lesion = ExampleLesion(diameter_mm=30.0)
    files = write_example_study(tmp_path / "d", lesion=True, inplane_mm=1.5, slice_thickness_mm=3.0,
                                lesion_spec=lesion)
    rep = _screen(tmp_path / "d", tmp_path / "out", config, model)
    folder = next((tmp_path / "out").iterdir())
    src = [pydicom.dcmread(str(f), stop_before_pixels=True) for f in files]
    uids = {d.SOPInstanceUID for d in src}
    sr = hd.sr.srread(str(folder / rep["outputs"]["sr"]))
    assert sr.StudyInstanceUID == src[0].StudyInstanceUID
    refs = {r.ReferencedSOPInstanceUID for item in sr.CurrentRequestedProcedureEvidenceSequence
            for s in item.ReferencedSeriesSequence for r in s.ReferencedSOPSequence}
    assert refs and refs <= uids
    assert rep["decision"] == "flagged"
    seg = hd.seg.segread(str(folder / rep["outputs"]["seg"]))
    assert seg.StudyInstanceUID == src[0].StudyInstanceUID
    seg_refs = {r.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence
                for r in s.ReferencedInstanceSequence}
    assert seg_refs <= uids and seg_refs


_NUMBER = re.compile(r"-?\d+\.\d+")


def _same_to_last_place(a, b) -> bool:
    """Equal, except that a float (or a decimal number inside a string) may differ by one unit in
    the last place it was rounded to: PyTorch does not promise bitwise-equal convolution sums in
    two processes, and CI twice saw one mean_probability read 0.5985 from the CLI and 0.5984 in
    process, with the same thread count. Everything else (decisions, labels, voxel counts,
    signal, series, outputs, text around the numbers) must be equal."""
    def close(x: str, y: str) -> bool:  # the finer of the two last places (repr may be 1e-06)
        places = max(-Decimal(x).as_tuple().exponent, -Decimal(y).as_tuple().exponent)
        return abs(float(x) - float(y)) <= 1.01 * 10.0 ** -places

    if isinstance(a, float) and isinstance(b, float):
        return close(repr(a), repr(b))
    if isinstance(a, str) and isinstance(b, str):
        xs, ys = _NUMBER.findall(a), _NUMBER.findall(b)
        return (_NUMBER.split(a) == _NUMBER.split(b) and len(xs) == len(ys)
                and all(close(x, y) for x, y in zip(xs, ys)))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_to_last_place(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_to_last_place(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_same_to_last_place_accepts_only_last_place_float_differences():
    assert _same_to_last_place({"p": 0.5985, "n": 17}, {"p": 0.5984, "n": 17})
    assert _same_to_last_place(["RAS (24.1, 2)"], ["RAS (24.2, 2)"])
    assert not _same_to_last_place({"p": 0.5986}, {"p": 0.5984})
    assert not _same_to_last_place({"p": 0.5985, "n": 17}, {"p": 0.5985, "n": 18})
    assert not _same_to_last_place(["RAS (24.1, 2)"], ["RAS (24.1, 3)"])
    assert not _same_to_last_place("flagged", "negative")
    assert not _same_to_last_place([1.0], [1.0, 2.0])
    assert _same_to_last_place(2e-06, 1e-06) and not _same_to_last_place(3e-06, 1e-06)


def test_cli_helper_process_writes_what_the_main_process_writes(tmp_path, config, model):
    """`screener screen` builds SR/SEG in its helper process; the outputs equal those written
    in one process (screen_study without a helper), floats to one unit in their last place."""
    import os
    import subprocess
    import sys

    import highdicom as hd

    write_example_study(tmp_path / "d", lesion=True, inplane_mm=1.5, slice_thickness_mm=3.0,
                        lesion_spec=ExampleLesion(diameter_mm=30.0))
    import torch

    here = _screen(tmp_path / "d", tmp_path / "here", config, model)
    # Same torch thread count in both processes, so that a convolution is summed in the same order
    # where the platform allows it (see _same_to_last_place for where it did not).
    run = subprocess.run([sys.executable, "-m", "screener", "screen", "-vv", str(tmp_path / "d"),
                          "-o", str(tmp_path / "cli"), "--device", "cpu"],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "helper process for headers and DICOM outputs" in run.stderr
    folder = next((tmp_path / "cli").iterdir())
    cli = json.loads((folder / "report.json").read_text())
    assert cli["decision"] == here["decision"] == "flagged"
    assert _same_to_last_place(cli["abnormality_score"], here["abnormality_score"])
    assert _same_to_last_place(cli["findings"], here["findings"]), (cli["findings"], here["findings"])
    assert cli["outputs"] == here["outputs"] and cli["outputs"]["sr"] and cli["outputs"]["seg"]
    here_dir = next((tmp_path / "here").iterdir())
    seg_cli = hd.seg.segread(str(folder / "seg.dcm"))
    seg_here = hd.seg.segread(str(here_dir / "seg.dcm"))
    assert np.array_equal(seg_cli.pixel_array, seg_here.pixel_array)

    def texts(items) -> list[tuple[str, str]]:  # (concept name, text) of every TEXT item
        return [v for i in items
                for v in ([(i.ConceptNameCodeSequence[0].CodeMeaning, i.TextValue)]
                          if "TextValue" in i else []) + texts(i.get("ContentSequence", []))]

    text = texts(hd.sr.srread(str(folder / "sr.dcm")).ContentSequence)
    assert {"Resolution limits", "Disclaimer"} <= {name for name, _ in text}
    assert _same_to_last_place(text, texts(hd.sr.srread(str(here_dir / "sr.dcm")).ContentSequence))


def test_outputs_failing_leave_no_sr_or_seg_beside_the_report(tmp_path, config, model, monkeypatch):
    import screener.io

    write_example_study(tmp_path / "d", lesion=True, inplane_mm=1.5, slice_thickness_mm=3.0,
                        lesion_spec=ExampleLesion(diameter_mm=30.0))

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(screener.io, "write_nifti", disk_full)
    rep = _screen(tmp_path / "d", tmp_path / "out", config, model)
    folder = next((tmp_path / "out").iterdir())
    assert rep["decision"] == "indeterminate"
    assert any(r.startswith("outputs_not_written") for r in rep["reasons"])
    assert rep["outputs"]["sr"] is None and rep["outputs"]["seg"] is None
    assert not (folder / "sr.dcm").exists() and not (folder / "seg.dcm").exists()


def test_cli_zipped_study_extracted_by_the_helper_is_read_and_then_removed(tmp_path):
    """The helper extracts the archive; the main process reads the pixels from that folder and
    removes it when it exits (a helper process runs no exit handlers)."""
    import os
    import subprocess
    import sys
    import zipfile

    files = write_example_study(tmp_path / "d", lesion=False, inplane_mm=2.0,
                                slice_thickness_mm=5.0)
    with zipfile.ZipFile(tmp_path / "study.zip", "w") as zf:
        for f in files:
            zf.write(f, f"study/{Path(f).name}")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    run = subprocess.run([sys.executable, "-m", "screener", "screen", "-vv",
                          str(tmp_path / "study.zip"), "-o", str(tmp_path / "out"), "--device", "cpu"],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "2"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "helper process for headers and DICOM outputs" in run.stderr
    rep = json.loads(next((tmp_path / "out").glob("*/report.json")).read_text())
    assert rep["decision"] in ("flagged", "negative"), rep["reasons"]  # assessed: pixels read
    assert rep["outputs"]["sr"] and rep["outputs"]["anomaly_map"]
    assert not list(tmp.glob("screener-zip-*"))
