"""Safe paths: names derived from UIDs or IDs never escape OUTDIR (screen, batch, serve spool and
results, inspect --nifti), and symbolic links in an input tree are not followed out of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from screener.config import load_config
from screener.io import find_studies
from screener.io.dicom_writer import StudyIdentity, write_mr_series

HOSTILE = "../../etc"
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI")


def _series(out: Path, ident: StudyIdentity | None = None, n: int = 3, **kw) -> list[Path]:
    vol = np.random.default_rng(1).normal(300, 30, (16, 12, n))
    return write_mr_series(vol, np.diag([2.0, 2.0, 3.0, 1.0]), out,
                           identity=ident or StudyIdentity(), **kw)


def _all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_symlinks_are_not_followed_out_of_the_input_tree(tmp_path):
    tree, outside = tmp_path / "tree", tmp_path / "outside"
    inside = _series(tree / "real")
    other = _series(outside / "other")  # another study, outside the tree
    (tree / "to_outside_file.dcm").symlink_to(other[0])
    (tree / "to_outside_dir").symlink_to(outside / "other", target_is_directory=True)
    (tree / "dangling.dcm").symlink_to(tmp_path / "nowhere.dcm")
    (tree / "loop.dcm").symlink_to(tree / "loop.dcm")
    (tree / "to_inside.dcm").symlink_to(inside[0])  # stays inside: allowed (a duplicate)
    found = find_studies([tree])
    assert [len(s.series[0].source_files) for s in found.studies] == [3]
    assert found.studies[0].study_instance_uid == \
        str(__import__("pydicom").dcmread(inside[0]).StudyInstanceUID)
    refused = sorted(Path(e.path).name for e in found.errors)
    assert refused == ["dangling.dcm", "loop.dcm", "to_outside_file.dcm"]
    assert all("symbolic link" in e.reason for e in found.errors)
    # Given explicitly, a linked folder is the user's choice and is read.
    assert len(find_studies([tree / "to_outside_dir"]).studies) == 1


def test_hostile_study_uid_cannot_escape_outdir_in_screen(tmp_path):
    from screener.pipeline import screen_study, study_dir_name

    _series(tmp_path / "in", StudyIdentity(study_instance_uid=HOSTILE),
            series_instance_uid="../../../tmp/evil-series")
    (study,) = find_studies([tmp_path / "in"]).studies
    assert study.study_instance_uid == HOSTILE
    name = study_dir_name(study)
    assert "/" not in name and ".." not in name
    before = _all_files(tmp_path)
    out = tmp_path / "deep" / "out"
    rep = screen_study(study, out, config=load_config(), model=None)  # 3 slices: no model needed
    assert rep["decision"] == "indeterminate"
    new = _all_files(tmp_path) - before
    assert new and all(p == out.parent or p.is_relative_to(out) for p in new)
    assert (out / name / "report.json").is_file()


def no_model(config, device="auto"):
    """Model loader for a batch whose studies never reach the model (QC stops them)."""
    return None


def test_hostile_uids_and_ids_cannot_escape_outdir_in_batch(tmp_path):
    from screener.batch import run_batch

    _series(tmp_path / "in" / "a", StudyIdentity(study_instance_uid=HOSTILE))
    _series(tmp_path / "in" / "b", StudyIdentity(study_instance_uid="/etc/passwd"))
    manifest = tmp_path / "in" / "m.csv"
    manifest.write_text("study_id,label,inputs\n../../../escape,negative,nothing.dcm\n"
                        "/abs/olute,negative,nothing.dcm\n")
    cfg = load_config()
    cfg["batch"].update({"model_loader": f"{__name__}:no_model", "progress": False})
    before = _all_files(tmp_path)
    out = tmp_path / "out"
    res = run_batch([tmp_path / "in", manifest], out, cfg, workers=0)
    assert res.summary["studies"] == 4
    assert res.summary["counts"]["indeterminate"] == 2 and res.summary["counts"]["failed"] == 2
    new = _all_files(tmp_path) - before
    assert all(p.is_relative_to(out) for p in new), sorted(str(p) for p in new)
    for key in res.tasks:
        assert "/" not in key and key not in (".", "..")
        assert (out / key).resolve().parent == out.resolve() or \
            (out / "errors" / f"{key}.json").is_file()


def test_serve_spool_and_results_names_are_hashes(tmp_path):
    from screener.pacs.runner import _study_dir_name
    from screener.pacs.scp import RefusedDataset, check_dataset
    from screener.pacs.spool import Spool
    from screener.types import Study

    spool = Spool(tmp_path / "spool")
    p = spool.instance_path(HOSTILE, "../x", "/etc/passwd")
    assert p.resolve().is_relative_to((tmp_path / "spool").resolve())
    stored = spool.store("../../..", "..", "../../../../tmp/evil", b"data")
    assert stored.path.resolve().is_relative_to((tmp_path / "spool").resolve())
    for spec in ("screener.pipeline:screen_study", "no.such:module"):
        name = _study_dir_name(spec, Study(HOSTILE))
        assert "/" not in name and ".." not in name
    # The SCP refuses such UIDs outright (status 0xA900), before anything is spooled.
    src = _series(tmp_path / "in", StudyIdentity(study_instance_uid=HOSTILE), n=1)[0]
    with pytest.raises(RefusedDataset) as info:
        check_dataset(src.read_bytes(), "")
    assert info.value.status == 0xA900


def test_inspect_nifti_names_stay_inside(tmp_path):
    from screener.io.inspect import inspect_inputs

    _series(tmp_path / "in", StudyIdentity(study_instance_uid=HOSTILE), n=3,
            extra={"SeriesDescription": "../../../../escape/me"})
    out = tmp_path / "nii"
    result = inspect_inputs([str(tmp_path / "in")], str(out))
    paths = [Path(s["nifti"]) for st in result["studies"] for s in st["series"] if s.get("nifti")]
    assert paths and all(p.resolve().is_relative_to(out.resolve()) for p in paths)
    assert not any(".." in part for p in paths for part in p.relative_to(out).parts)
