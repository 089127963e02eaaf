"""overlay.png (radiological orientation, key slices) and the self-contained report.html."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from report_cases import make_case, make_report

from screener.report.html import render_html, write_html
from screener.report.overlay import render_overlay, write_overlay


def cyan_pixels(png: bytes) -> np.ndarray:
    from matplotlib.image import imread

    rgb = imread(io.BytesIO(png))[..., :3]
    return np.argwhere((rgb[..., 0] < 0.3) & (rgb[..., 1] > 0.8) & (rgb[..., 2] > 0.8))


def scene(side_x: float, ant_y: float, geometry_rot=None):
    """Ellipsoid head on a sagittal grid with a lesion at world (side_x, ant_y, 10)."""
    shape = (90, 80, 60)
    aff = np.eye(4)
    aff[:3, :3] = np.array([[0, 0, -1.0], [1.0, 0, 0], [0, 1.0, 0]]) @ np.diag([2.0, 2.0, 2.5])
    aff[:3, 3] = -aff[:3, :3] @ ((np.asarray(shape) - 1) / 2)
    xyz = (np.indices(shape).reshape(3, -1).T @ aff[:3, :3].T + aff[:3, 3]).reshape(*shape, 3)
    brain = (((xyz) / [70, 85, 60]) ** 2).sum(-1) <= 1
    les = np.linalg.norm(xyz - [side_x, ant_y, 10.0], axis=-1) <= 9
    img = np.where(brain, 100.0, 0.0) + np.random.default_rng(0).normal(0, 3, shape)
    img[les] += 50
    return img, aff, np.where(les, 0.9, 0.0), les.astype(np.int32), brain


@pytest.mark.parametrize("side_x,ant_y", [(35.0, 30.0), (-35.0, -30.0)])
def test_radiological_orientation(side_x, ant_y):
    img, aff, prob, labels, brain = scene(side_x, ant_y)
    png = render_overlay(img, aff, prob, labels, brain_mask=brain, title="t")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pts = cyan_pixels(png)
    assert len(pts) > 10
    from matplotlib.image import imread

    rgb = imread(io.BytesIO(png))[..., :3]
    head = np.argwhere((rgb.min(-1) > 0.25) & (np.ptp(rgb, axis=-1) < 0.05))  # grey brain
    col, row = pts[:, 1].mean(), pts[:, 0].mean()
    # Patient's right (x > 0) on the viewer's left; anterior (y > 0) at the top.
    assert (col < head[:, 1].mean()) == (side_x > 0)
    assert (row < head[:, 0].mean()) == (ant_y > 0)


def test_key_slices_follow_findings_or_brain(tmp_path):
    img, aff, prob, labels, brain = scene(35.0, 30.0)
    one = render_overlay(img, aff, prob, labels, brain_mask=brain)
    none = render_overlay(img, aff, None, None, brain_mask=brain)
    from matplotlib.image import imread

    # One finding -> one panel; no finding -> three representative slices (wider figure).
    assert imread(io.BytesIO(none)).shape[1] > 2.5 * imread(io.BytesIO(one)).shape[1]
    assert len(cyan_pixels(none)) == 0
    path = write_overlay(img, aff, prob, labels, tmp_path / "overlay.png", brain_mask=brain)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_html_is_self_contained_and_escaped(tmp_path, calibration):
    case = make_case(tmp_path, "oblique")
    rep = make_report(case, calibration)
    rep["reasons"].append("<script>alert(1)</script>")
    png = render_overlay(case.image, case.affine, case.prob, case.analysis.labels)
    (tmp_path / "overlay.png").write_bytes(png)
    path = write_html(rep, tmp_path)
    text = path.read_text()
    assert path == tmp_path / "report.html"
    assert "FLAGGED" in text and rep["disclaimer"] in text
    assert rep["resolution_limits"]["statement"] in text
    assert f"{rep['findings'][0]['volume_ml']:.2f}" in text
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "data:image/png;base64," in text
    assert not re.search(r"(src|href)=['\"](https?:|//|file:)", text)
    neg = make_report(make_case(tmp_path / "n", "axial", lesion=False), calibration)
    page = render_html(neg)
    assert "NEGATIVE" in page and "None above the detection threshold" in page
    assert "data:image/png" not in page


def test_html_shows_the_verifier_column_only_when_findings_carry_it(tmp_path, calibration):
    rep = make_report(make_case(tmp_path, "oblique"), calibration)
    assert rep["findings"] and "verifier" not in render_html(rep)
    rep["findings"][0]["verifier_probability"] = 0.8765
    page = render_html(rep)
    assert "lesion-likeness (verifier)" in page and "0.88" in page
