"""The midsagittal mirror channel: the plane is found, the reflection is right, the network that
gains the channel starts as its donor, and predict() feeds both channels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from screener.model.symmetry import Plane, estimate_plane, mirror


def _phantom(normal: np.ndarray, offset: float, shape=(64, 72, 60), voxel_mm=2.0,
             extra_blob: bool = False) -> torch.Tensor:
    """A head-like volume symmetric about {p: normal.p = offset} (p in mm from the grid centre):
    an ellipsoid 'head' with mirrored pairs of inner blobs of different brightness and size."""
    n = normal / np.linalg.norm(normal)
    # an orthonormal frame whose first axis is the plane normal
    a = np.array([0.0, 1.0, 0.0]) if abs(n[1]) < 0.9 else np.array([0.0, 0.0, 1.0])
    u = np.cross(n, a)
    u /= np.linalg.norm(u)
    v = np.cross(n, u)
    axes = [(np.arange(s) - (s - 1) / 2.0) * voxel_mm for s in shape]
    p = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    q = np.stack([p @ n - offset, p @ u, p @ v], -1)  # coordinates in the plane's frame
    qx = np.abs(q[..., 0])  # symmetric in the normal direction
    img = (((q[..., 0] / 50) ** 2 + (q[..., 1] / 40) ** 2 + (q[..., 2] / 45) ** 2) < 1) * 0.5
    for (cx, cy, cz, r, level) in [(20, 10, 5, 8, 0.4), (12, -15, -10, 6, -0.3), (28, -5, 20, 5, 0.3)]:
        img = img + level * (((qx - cx) ** 2 + (q[..., 1] - cy) ** 2 + (q[..., 2] - cz) ** 2) < r * r)
    if extra_blob:  # one-sided
        img = img + 0.5 * (((q[..., 0] + 25) ** 2 + (q[..., 1] - 20) ** 2 + (q[..., 2] + 15) ** 2) < 49)
    img = torch.from_numpy(img.astype(np.float32))
    return torch.nn.functional.avg_pool3d(img[None, None], 3, 1, 1)[0, 0]  # soft edges


@pytest.mark.parametrize("normal, offset, shape", [((1.0, 0.0, 0.0), 0.0, (64, 72, 60)),
                                                   ((1.0, 0.14, -0.07), 7.0, (64, 72, 60)),
                                                   ((1.0, -0.2, 0.1), -11.0, (64, 72, 60)),
                                                   ((1.0, 0.1, 0.05), 5.0, (63, 71, 59))])
def test_plane_of_a_tilted_shifted_symmetric_phantom_is_found(normal, offset, shape):
    n = np.asarray(normal) / np.linalg.norm(normal)
    plane = estimate_plane(_phantom(n, offset, shape=shape), 2.0, steps=80)
    angle = np.degrees(np.arccos(min(1.0, abs(float(plane.normal @ n)))))
    assert angle < 2.0, (angle, plane)
    assert abs(plane.offset_mm - offset * np.sign(plane.normal @ n)) < 0.5, plane


def test_reflection_leaves_a_symmetric_head_alone_and_shows_a_one_sided_lesion():
    n = np.array([1.0, 0.1, 0.05]) / np.linalg.norm([1.0, 0.1, 0.05])
    sym = _phantom(n, 4.0)
    plane = Plane(normal=n, offset_mm=4.0)  # the true plane
    err = (mirror(sym, 2.0, plane) - sym).abs()
    assert float(err.mean()) < 0.01
    lesioned = _phantom(n, 4.0, extra_blob=True)
    diff = (mirror(lesioned, 2.0) - lesioned).abs()  # estimated plane
    blob = (lesioned - sym) > 0.4
    assert float(diff[blob].mean()) > 0.3  # the lesion differs from its mirror site
    assert float(diff[~blob & (sym > 0.2)].mean()) < 0.05  # the rest of the head does not
    # a naive flip about the grid centre does not line the hemispheres up
    naive = (sym.flip(0) - sym).abs()
    assert float(naive[sym > 0.2].mean()) > 5 * float(err[sym > 0.2].mean())


def test_network_gaining_the_mirror_channel_starts_as_its_donor():
    from screener.model.networks import NetworkConfig, build_network, transfer_weights

    torch.manual_seed(0)
    cfg = NetworkConfig(channels=(4, 8, 16), strides=(2, 2))
    donor = build_network(cfg).eval()
    two = build_network(NetworkConfig(channels=(4, 8, 16), strides=(2, 2), in_channels=2)).eval()
    taken = transfer_weights(two, donor.state_dict())
    assert taken == sorted(donor.state_dict())  # every tensor, the first convolutions grown
    img, other = torch.randn(1, 1, 24, 24, 24), torch.randn(1, 1, 24, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(two(torch.cat([img, other], 1)), donor(img))
    first = two.state_dict()["model.0.conv.unit0.conv.weight"]
    assert first.shape[1] == 2 and torch.count_nonzero(first[:, 1]) == 0


def test_predict_feeds_the_image_and_its_reflection_when_the_bundle_says_two_channels():
    from screener.infer import LoadedModel, ModelConfig, predict
    from screener.model.anatomy import N_CLASSES, Tissue
    from screener.types import SeriesInfo, SeriesVolume

    seen: list[torch.Tensor] = []

    class Net(torch.nn.Module):
        def forward(self, x):
            seen.append(x)
            out = torch.zeros((x.shape[0], N_CLASSES) + tuple(x.shape[2:]))
            out[:, int(Tissue.WM)] = 10.0 * (x[:, 0] > 0.3)
            out[:, int(Tissue.NONBRAIN)] = 10.0 * (x[:, 0] <= 0.3)
            return out

    n = np.array([1.0, 0.0, 0.0])
    data = _phantom(n, 6.0, shape=(48, 56, 48)).numpy() * 100
    vol = SeriesVolume(data=data, affine=np.diag([2.0, 2.0, 2.0, 1.0]), info=SeriesInfo("s", "s"))
    model = LoadedModel(net=Net(), name="fake", version="0", weights_sha256="", device="cpu",
                        voxel_mm=2.0, metadata={"network": {"in_channels": 2}}, weights_dir=None,
                        config=ModelConfig(roi_size=None, use_outlier=False))
    predict(vol, model)
    x = seen[0]
    assert x.shape[1] == 2
    # the second channel is the first reflected about x = 6 mm: voxel i <-> the one 6 mm across
    img, ref = x[0, 0], x[0, 1]
    err, naive = float((img - ref).abs().mean()), float((img - img.flip(0)).abs().mean())
    assert err < 0.1 * float(img.mean())
    assert naive > 3 * err


def test_mirror_config_trains_exports_and_screens_with_two_channels(tmp_path, shared):
    from dataclasses import replace

    from screener.config import REPO_ROOT
    from screener.infer import ModelConfig, load_model, predict
    from screener.model.bundle import export_bundle
    from screener.model.train import load_train_config, train
    from screener.types import SeriesInfo, SeriesVolume

    shared("synth-label-maps")
    smoke = load_train_config(REPO_ROOT / "configs/train-mirror.yaml", smoke=True)
    assert smoke.network.in_channels == 2
    cfg = replace(smoke, iterations=2, val_every=10**6, init_from=None)
    ckpt = train(cfg, run_dir=tmp_path / "run")
    out = export_bundle(ckpt, tmp_path / "bundle", cfg)
    model = load_model(ModelConfig(weights=str(out), roi_size=None), "cpu")
    assert model.metadata["network_data_format"]["inputs"]["image"]["num_channels"] == 2
    assert model.net.model[0].conv.unit0.conv.weight.shape[1] == 2
    data = _phantom(np.array([1.0, 0.0, 0.0]), 0.0, shape=(40, 48, 40)).numpy() * 100
    pred = predict(SeriesVolume(data=data, affine=np.diag([4.0, 4.0, 4.0, 1.0]),
                                info=SeriesInfo("s", "s")), model)
    assert pred.lesion_prob.shape == data.shape and np.isfinite(pred.lesion_prob).all()


def test_empty_or_constant_volumes_give_a_finite_mirror():
    for vol in (torch.zeros(20, 24, 20), torch.full((20, 24, 20), 0.7)):
        plane = estimate_plane(vol, 2.0)
        assert np.isfinite(plane.normal).all() and np.isfinite(plane.offset_mm)
        assert torch.isfinite(mirror(vol, 2.0, plane)).all()


def test_network_input_is_the_image_or_image_and_mirror_and_nothing_else():
    from screener.model.symmetry import network_input

    img = _phantom(np.array([1.0, 0.0, 0.0]), 0.0, shape=(20, 24, 20))[None]
    assert network_input(img, 1, 2.0) is img
    assert network_input(img, 2, 2.0).shape == (2, 20, 24, 20)
    with pytest.raises(ValueError):
        network_input(img, 3, 2.0)


def test_tissue_map_comparisons_see_a_one_sided_grey_blob_and_not_symmetric_anatomy():
    """The two regional comparisons of benchmarks/mirror_tissue.py: symmetric tissue (white
    matter with a grey nucleus on each side) gives no make-up asymmetry and no misplaced grey
    matter; a grey-matter-like blob in one hemisphere's white matter gives both, there only."""
    from screener.model.anatomy import N_CLASSES, Tissue
    from screener.model.symmetry import misplaced_grey, tissue_asymmetry

    shape, vox = (48, 56, 48), 2.0
    img = _phantom(np.array([1.0, 0.0, 0.0]), 0.0, shape, vox)
    axes = [(np.arange(s) - (s - 1) / 2.0) * vox for s in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    brain = (x / 40) ** 2 + (y / 48) ** 2 + (z / 40) ** 2 < 1
    nuclei = ((np.abs(x) - 16) ** 2 + y ** 2 + z ** 2) < 8 ** 2  # one each side
    blob = ((x + 20) ** 2 + (y - 24) ** 2 + (z - 10) ** 2) < 7 ** 2  # left only

    def probs(grey: np.ndarray) -> np.ndarray:
        p = np.zeros((N_CLASSES,) + shape, np.float32)
        p[int(Tissue.GM)] = brain & grey
        p[int(Tissue.WM)] = brain & ~grey
        p[int(Tissue.NONBRAIN)] = ~brain
        return p

    normal = probs(nuclei)
    assert tissue_asymmetry(img, normal, vox, 3.0)[brain].max() < 0.1
    assert not misplaced_grey(img, normal, vox).any()
    lesion = probs(nuclei | blob)
    a = tissue_asymmetry(img, lesion, vox, 3.0)
    assert a[blob].max() > 0.5
    far = brain & ((x + 20) ** 2 + (y - 24) ** 2 + (z - 10) ** 2 > 14 ** 2) & \
        ((x - 20) ** 2 + (y - 24) ** 2 + (z - 10) ** 2 > 14 ** 2)
    assert a[far].max() < 0.1
    g = misplaced_grey(img, lesion, vox)
    assert g[blob].sum() > 0 and not g[~blob].any()
