"""`screener train --smoke` runs, resumes, exports a bundle whose checksum is verified at load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from screener.config import REPO_ROOT
from screener.model.bundle import WeightsError, load_bundle
from screener.model.train import load_train_config


def test_smoke_train_resume_export_and_tamper(tmp_path, shared):
    shared("synth-label-maps")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "screener", "train", "--smoke", "--run-dir", str(run)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=REPO_ROOT)
    assert first.returncode == 0, first.stderr[-2000:]
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["it"] == 6 and "brain_dice" in log[-1]
    batch = load_train_config(REPO_ROOT / "configs/train.yaml", smoke=True).batch_size
    assert log[-1]["samples"] == 6 * batch  # the stream resumes from the samples drawn
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=REPO_ROOT)
    assert again.returncode == 0 and "resuming" in again.stderr
    from dataclasses import replace

    import torch

    from screener.model.bundle import export_bundle
    from screener.model.train import train

    # A resumed run takes the config's learning rate, not the one saved with the optimizer.
    smoke = load_train_config(REPO_ROOT / "configs/train.yaml", smoke=True)
    saved = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert saved["optimizer"]["param_groups"][0]["lr"] == smoke.learning_rate
    annealed = run.parent / "annealed"
    annealed.mkdir()
    (annealed / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes())
    torch.set_num_threads(2)
    train(replace(smoke, learning_rate=smoke.learning_rate / 10, iterations=7, val_every=10**6,
                  threads=1), run_dir=annealed)
    assert torch.get_num_threads() == 2  # the caller's thread count comes back
    after = torch.load(annealed / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert after["iteration"] == 7 and after["samples"] == saved["samples"] + batch
    assert after["optimizer"]["param_groups"][0]["lr"] == pytest.approx(smoke.learning_rate / 10)

    out = tmp_path / "bundle"
    export_bundle(run / "checkpoint.pt", out, load_train_config(REPO_ROOT / "configs/train.yaml", smoke=True))
    meta, state = load_bundle(out)
    assert meta["training"]["command"] == "screener train --config configs/train.yaml"
    named = export_bundle(run / "checkpoint.pt", tmp_path / "named", load_train_config(
        REPO_ROOT / "configs/train.yaml", smoke=True), config_path="configs/train-large.yaml")
    assert load_bundle(named)[0]["training"]["command"].endswith("--config configs/train-large.yaml")
    assert meta["intended_use"].startswith("research and worklist triage")
    assert meta["training"]["iterations"] == 6 and state
    assert meta["version"] == "unreleased" and meta["changelog"] == {}  # a candidate, not a release
    # The label maps are named as the repository sees them, so the bundle works on any machine.
    maps_dir = meta["training"]["config"]["synth"]["label_maps_dir"]
    assert not Path(maps_dir).is_absolute()
    assert (REPO_ROOT / maps_dir).resolve() == (REPO_ROOT / "../shared/synth-label-maps").resolve()
    model = out / "models" / "model.pt"
    model.write_bytes(model.read_bytes()[:-10])
    with pytest.raises(WeightsError):
        load_bundle(out)


def test_sigterm_to_the_whole_process_group_stops_training_cleanly(tmp_path, shared):
    """`pkill -f "screener train"` signals the DataLoader worker too (same command line). The run
    must still stop after a whole step, exit 0 and save a checkpoint whose sample count is that of
    the steps done (a killed worker once made it raise mid-step and count the unfinished batch)."""
    import os
    import signal
    import time

    import torch
    import yaml

    maps = shared("synth-label-maps")
    data = yaml.safe_load((REPO_ROOT / "configs/train.yaml").read_text())
    data.update(iterations=100000, log_every=1, val_every=10**6, checkpoint_every=10**6,
                val_samples=1, loader_workers=1, train_maps=1)
    data["synth"].update(label_maps_dir=str(maps), max_label_maps=2, grid_shape=[48, 48, 48],
                         voxel_mm=4.0)
    data["network"]["channels"] = [4, 8, 16, 32, 64]
    cfg_path = tmp_path / "train.yaml"
    cfg_path.write_text(yaml.safe_dump(data))
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "screener", "train", "--config", str(cfg_path),
                             "--run-dir", str(run)], cwd=REPO_ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            log = run / "log.jsonl"
            if log.exists() and len(log.read_text().splitlines()) >= 3:
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        os.killpg(proc.pid, signal.SIGTERM)  # main process and worker alike, as pkill -f does
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-2000:]
    saved = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert saved["iteration"] >= 3
    assert saved["samples"] == saved["iteration"] * data["batch_size"]


def test_shipped_weights_are_verified_and_small():
    wdir = REPO_ROOT / "weights" / "screener-synth-v1"
    meta, state = load_bundle(wdir)
    assert (wdir / "models" / "model.pt").stat().st_size < 50 * 2**20
    for key in ("version", "changelog", "intended_use", "network_data_format", "training",
                "provenance", "evaluation"):
        assert key in meta, key
    assert "not a diagnostic device" in meta["intended_use"]


def test_lesion_tversky_term_penalises_misses_more_than_false_alarms():
    import dataclasses

    import torch

    from screener.model.anatomy import N_CLASSES, Tissue
    from screener.model.train import TrainConfig, make_loss

    target = torch.zeros((1, 1, 8, 8, 8), dtype=torch.long)
    target[..., 2:6, 2:6, 2:4] = int(Tissue.LESION)     # 32 lesion voxels
    elsewhere = torch.zeros_like(target, dtype=torch.bool)
    elsewhere[..., 2:6, 2:6, 5:7] = True                # 32 other voxels

    def logits(lesion_at: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((1, N_CLASSES, 8, 8, 8))
        out[:, int(Tissue.WM)] = 6.0                    # confident background elsewhere
        out[:, int(Tissue.LESION)][lesion_at[:, 0]] = 12.0
        return out

    truth = target == int(Tissue.LESION)
    hit_and_false = logits(truth | elsewhere)           # finds the lesion, 32 false voxels
    half_missed = truth.clone()
    half_missed[..., 2:4, :, :] = False                 # finds half, misses 16 voxels
    weights = torch.ones(N_CLASSES)
    plain = make_loss(TrainConfig(), weights)
    recall = make_loss(dataclasses.replace(TrainConfig(), lesion_tversky_weight=1.0), weights)
    miss = logits(half_missed)
    # DiceCE alone is the old loss (weights 0.4.0 and earlier), unchanged by the option's default.
    assert TrainConfig().lesion_tversky_weight == 0.0
    extra_miss = float(recall(miss, target) - plain(miss, target))
    extra_false = float(recall(hit_and_false, target) - plain(hit_and_false, target))
    assert extra_miss > 0 and extra_false > 0
    # per wrong voxel, a missed lesion voxel costs more than a false one (beta > alpha)
    assert extra_miss / 16 > extra_false / 32 * 1.5


def _added_to_the_loss(logits, target, **changes) -> float:
    """What `changes` to the training config add to the loss (Tversky on in both) on these logits."""
    import dataclasses

    import torch

    from screener.model.anatomy import N_CLASSES
    from screener.model.train import TrainConfig, make_loss

    cfg = dataclasses.replace(TrainConfig(), lesion_tversky_weight=1.0)
    weights = torch.ones(N_CLASSES)
    changed = make_loss(dataclasses.replace(cfg, **changes), weights)
    return float(changed(logits, target) - make_loss(cfg, weights)(logits, target))


def test_crop_detection_term_punishes_a_confident_cluster_in_a_lesion_free_crop():
    import torch

    from screener.model.anatomy import N_CLASSES, Tissue
    from screener.model.train import TrainConfig, crop_detection_loss

    k = 8
    free = torch.zeros((1, 1, 8, 8, 8))                       # lesion-free crop
    cluster = torch.full_like(free, 0.01)
    cluster[..., 2:4, 2:4, 2:4] = 0.99                        # 8 confident false voxels
    assert float(crop_detection_loss(cluster, free, k)) > 3.0
    assert float(crop_detection_loss(torch.full_like(free, 0.01), free, k)) < 0.02
    lesion = torch.zeros_like(free)
    lesion[..., 0:2, 0:2, 0:2] = 1.0                          # 8 lesion voxels: a positive crop
    assert float(crop_detection_loss(torch.full_like(free, 0.01), lesion, k)) > 3.0
    assert float(crop_detection_loss(cluster, lesion, k)) < 0.02
    small = torch.zeros_like(free)
    small[..., 0, 0, 0] = 1.0                                 # 1 to k-1 lesion voxels: left out
    assert float(crop_detection_loss(cluster, small, k)) == 0.0
    both = crop_detection_loss(torch.cat([cluster, cluster]), torch.cat([free, small]), k)
    assert float(both) == float(crop_detection_loss(cluster, free, k))
    p = cluster.clone().requires_grad_(True)
    crop_detection_loss(p, free, k).backward()
    assert float(p.grad[..., 2, 2, 2]) > 0 and float(p.grad[..., 6, 6, 6]) == 0.0  # down on the cluster

    # In the training loss: off by default; with a weight it adds exactly weight x the term.
    cfg = TrainConfig()
    assert cfg.crop_detection_weight == 0.0
    target = torch.full((1, 1, 8, 8, 8), int(Tissue.WM), dtype=torch.long)
    logits = torch.zeros((1, N_CLASSES, 8, 8, 8))
    logits[:, int(Tissue.WM)] = 4.0
    logits[:, int(Tissue.LESION), 2:4, 2:4, 2:4] = 12.0
    extra = _added_to_the_loss(logits, target, crop_detection_weight=0.5,
                               crop_detection_ml=8 * cfg.synth.voxel_mm**3 / 1000.0)
    p_les = torch.softmax(logits, 1)[:, int(Tissue.LESION):int(Tissue.LESION) + 1]
    assert extra == pytest.approx(0.5 * float(crop_detection_loss(p_les, torch.zeros_like(p_les), 8)),
                                  rel=1e-5)


def test_hard_negative_term_punishes_a_false_cluster_away_from_the_lesion_only():
    import torch

    from screener.model.anatomy import N_CLASSES, Tissue
    from screener.model.train import TrainConfig, hard_negative_loss

    k, margin = 8, 1
    lesion = torch.zeros((1, 1, 12, 12, 12))
    lesion[..., 0:2, 0:2, 0:2] = 1.0                          # 8 lesion voxels in a corner
    quiet = torch.full_like(lesion, 0.01)
    on_lesion = quiet.clone()
    on_lesion[..., 0:3, 0:3, 0:3] = 0.99                      # the lesion and its 1-voxel margin
    far = quiet.clone()
    far[..., 8:10, 8:10, 8:10] = 0.99                         # 8 confident voxels far away
    assert float(hard_negative_loss(on_lesion, lesion, k, margin)) < 0.02  # the margin is exempt
    assert float(hard_negative_loss(far, lesion, k, margin)) > 3.0
    # a lesion-free crop is the crop-detection term's business, not this one's
    assert float(hard_negative_loss(far, torch.zeros_like(lesion), k, margin)) == 0.0
    both = hard_negative_loss(torch.cat([far, far]), torch.cat([lesion, torch.zeros_like(lesion)]),
                              k, margin)
    assert float(both) == pytest.approx(float(hard_negative_loss(far, lesion, k, margin)))
    p = far.clone().requires_grad_(True)
    hard_negative_loss(p, lesion, k, margin).backward()
    assert float(p.grad[..., 9, 9, 9]) > 0 and float(p.grad[..., 0, 0, 0]) == 0.0

    # In the training loss: off by default; with a weight it adds exactly weight x the term.
    cfg = TrainConfig()
    assert cfg.hard_negative_weight == 0.0
    target = torch.full((1, 1, 12, 12, 12), int(Tissue.WM), dtype=torch.long)
    target[..., 0:2, 0:2, 0:2] = int(Tissue.LESION)
    logits = torch.zeros((1, N_CLASSES, 12, 12, 12))
    logits[:, int(Tissue.WM)] = 4.0
    logits[:, int(Tissue.LESION), 8:10, 8:10, 8:10] = 12.0
    extra = _added_to_the_loss(logits, target, hard_negative_weight=0.5,
                               hard_negative_margin_vox=margin,
                               crop_detection_ml=8 * cfg.synth.voxel_mm**3 / 1000.0)
    p_les = torch.softmax(logits, 1)[:, int(Tissue.LESION):int(Tissue.LESION) + 1]
    truth = (target == int(Tissue.LESION)).float()
    assert extra == pytest.approx(0.5 * float(hard_negative_loss(p_les, truth, 8, margin)), rel=1e-5)
    assert extra > 1.0


def _tiny(top_norm: bool):
    from screener.model.networks import NetworkConfig, build_network

    return build_network(NetworkConfig(channels=(4, 8, 16), strides=(2, 2), top_norm=top_norm))


def test_top_norm_off_keeps_every_tensor_and_folding_reproduces_the_donor():
    import torch

    from screener.model.networks import fold_top_norm, transfer_weights

    torch.manual_seed(0)
    donor = _tiny(True).eval()
    plain = _tiny(False).eval()
    assert transfer_weights(plain, donor.state_dict()) == sorted(donor.state_dict())
    img = torch.randn(1, 24, 24, 24)
    with torch.no_grad():
        ref, unfolded = donor(img[None]), plain(img[None])
    assert (ref - unfolded).abs().max() > 0.1  # without the norm the class maps differ
    fold_top_norm(plain, [img])  # folded on this window: the donor's own normalisation
    with torch.no_grad():
        torch.testing.assert_close(plain(img[None]), ref, atol=2e-4, rtol=1e-4)


def test_smoke_run_starts_from_another_runs_weights(tmp_path, shared):
    from dataclasses import replace

    import torch

    from screener.model.train import train

    shared("synth-label-maps")
    smoke = load_train_config(REPO_ROOT / "configs/train-topfree.yaml", smoke=True)
    first = replace(smoke, iterations=2, val_every=10**6, init_from=None,
                    network=replace(smoke.network, top_norm=True))
    donor = train(first, run_dir=tmp_path / "donor")
    second = replace(smoke, iterations=2, val_every=10**6, learning_rate=0.0,
                     init_from=str(donor))
    train(second, run_dir=tmp_path / "second")
    a = torch.load(donor, map_location="cpu", weights_only=False)["model"]
    b = torch.load(tmp_path / "second" / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]
    assert sorted(a) == sorted(b)
    top = "model.2.0.conv.weight"  # the folded top convolution; every other tensor as the donor's
    assert not torch.equal(a[top], b[top])
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("model.2.0.conv"))
    # Exported and loaded as the screen loads weights, the network keeps its norm-free top.
    from screener.infer import ModelConfig, load_model
    from screener.model.bundle import export_bundle

    out = export_bundle(tmp_path / "second" / "checkpoint.pt", tmp_path / "bundle", second)
    loaded = load_model(ModelConfig(weights=str(out)), "cpu")
    assert isinstance(loaded.net.model[-1][0].adn.N, torch.nn.Identity)
    assert all(torch.equal(v, b[k]) for k, v in loaded.net.state_dict().items())


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "configs").glob("train*.yaml")),
                         ids=lambda p: p.name)
def test_every_training_config_loads_and_its_start_is_committed(path):
    from screener.config import repo_path

    cfg = load_train_config(path)
    assert cfg.iterations > 0 and cfg.run_dir
    # The run it starts from must be in the repository, not on one machine: a file, or a committed
    # one named COMMIT:PATH (the file has moved on since).
    committed = list(cfg.init_average)
    if cfg.init_from and not repo_path(cfg.init_from).is_file():
        assert ":" in cfg.init_from, cfg.init_from
        committed.append(cfg.init_from)
    for spec in committed:
        listed = subprocess.run(["git", "-C", str(REPO_ROOT), "cat-file", "-e", spec],
                                capture_output=True)
        if listed.returncode != 0 and not (REPO_ROOT / ".git").exists():
            pytest.skip("no git history here")
        assert listed.returncode == 0, spec
    assert len(cfg.synth.contrast_weights) in (0, 5)


def test_average_checkpoints_is_the_mean_and_refuses_other_networks(tmp_path):
    import torch

    from screener.model.bundle import average_checkpoints

    a = {"model": {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}, "iteration": 5}
    b = {"model": {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(3)}, "iteration": 9}
    torch.save(a, tmp_path / "a.pt")
    torch.save(b, tmp_path / "b.pt")
    avg = average_checkpoints([str(tmp_path / "a.pt"), str(tmp_path / "b.pt")])
    assert torch.equal(avg["model"]["w"], torch.tensor([2.0, 4.0]))
    assert int(avg["model"]["n"]) == 3 and avg["iteration"] == 9
    assert avg["averaged_from"] == [str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]
    torch.save({"model": {"w": torch.zeros(3), "n": torch.tensor(3)}, "iteration": 1}, tmp_path / "c.pt")
    with pytest.raises(ValueError, match="not the same network"):
        average_checkpoints([str(tmp_path / "a.pt"), str(tmp_path / "c.pt")])
    torch.save({"model": {"w": torch.zeros(2), "n": torch.tensor(4)}, "iteration": 1}, tmp_path / "d.pt")
    with pytest.raises(ValueError, match="integer tensor"):
        average_checkpoints([str(tmp_path / "a.pt"), str(tmp_path / "d.pt")])
    with pytest.raises(ValueError):
        average_checkpoints([])


def test_read_checkpoint_from_the_repository_history():
    """COMMIT:PATH reads the blob git stored: here the committed checkpoint the working tree holds."""
    import torch

    from screener.model.bundle import read_checkpoint

    path = "checkpoints/screener-synth-v1-t1/checkpoint.pt"
    head = subprocess.run(["git", "-C", str(REPO_ROOT), "log", "-1", "--format=%H", "--", path],
                          capture_output=True, text=True)
    if head.returncode != 0 or not head.stdout.strip():
        pytest.skip("no git history here")
    got = read_checkpoint(f"{head.stdout.strip()}:{path}")
    want = torch.load(REPO_ROOT / path, map_location="cpu", weights_only=False)
    assert got["iteration"] == want["iteration"]
    assert all(torch.equal(got["model"][k], want["model"][k]) for k in want["model"])


def test_read_checkpoint_takes_relative_paths_from_the_repository(tmp_path, monkeypatch):
    """A relative path (as configs' init_average lists them) names the same file from any
    working directory."""
    import torch

    from screener.model.bundle import read_checkpoint

    path = "checkpoints/screener-synth-v1-t1/checkpoint.pt"
    if not (REPO_ROOT / path).exists():
        pytest.skip("checkpoint not in this checkout")
    monkeypatch.chdir(tmp_path)
    got = read_checkpoint(path)
    want = torch.load(REPO_ROOT / path, map_location="cpu", weights_only=False)
    assert got["iteration"] == want["iteration"]
    with pytest.raises(FileNotFoundError):
        read_checkpoint("checkpoints/no-such-run/checkpoint.pt")
    # a file in the working directory wins (a path typed on the command line)
    torch.save({"iteration": -7, "model": {}}, tmp_path / "mine.pt")
    assert read_checkpoint("mine.pt")["iteration"] == -7


def test_bf16_autocast_training_steps(tmp_path, shared):
    """train.autocast_bf16: the forward pass runs in bfloat16, the saved weights stay float32 and
    the losses are finite (NaN fails the range check)."""
    shared("synth-label-maps")
    from dataclasses import replace

    import torch

    from screener.model.train import train

    smoke = load_train_config(REPO_ROOT / "configs/train.yaml", smoke=True)
    run = tmp_path / "bf16"
    cfg = replace(smoke, autocast_bf16=True, iterations=4, val_every=10**6, log_every=2,
                  checkpoint_every=4)
    train(cfg, run_dir=run)
    saved = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert saved["iteration"] == 4 and saved["config"]["autocast_bf16"] is True
    assert all(v.dtype == torch.float32 for v in saved["model"].values() if v.is_floating_point())
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses and all(0 < x < 100 for x in losses), losses


def test_crops_per_head_keeps_crop_zero_resumes_mid_head_and_offsets(shared):
    """train.crops_per_head / sample_offset: with k crops per head, crop 0 of each head is the crop
    a run with 1 draws for that head; a stream resumed after an odd number of crops continues with
    the same head's next crop; the offset starts the stream at a later head."""
    shared("synth-label-maps")
    from dataclasses import replace
    from itertools import islice

    import torch

    from screener.model.train import _Stream

    smoke = replace(load_train_config(REPO_ROOT / "configs/train.yaml", smoke=True),
                    crop_shape=(24, 24, 24))  # smaller than the smoke grid, so crops differ
    one = list(islice(iter(_Stream(smoke, 0)), 3))
    two_cfg = replace(smoke, crops_per_head=2)
    two = list(islice(iter(_Stream(two_cfg, 0)), 6))
    for h in range(3):
        assert torch.equal(two[2 * h][0], one[h][0]) and torch.equal(two[2 * h][1], one[h][1])
    # the second crop of a head is cut elsewhere
    assert not torch.equal(two[1][0], two[0][0])
    resumed = list(islice(iter(_Stream(two_cfg, 3)), 2))
    assert torch.equal(resumed[0][0], two[3][0]) and torch.equal(resumed[1][0], two[4][0])
    shifted = list(islice(iter(_Stream(replace(smoke, sample_offset=2), 0)), 1))
    assert torch.equal(shifted[0][0], one[2][0])


def test_training_config_refuses_no_crops_per_head(tmp_path):
    text = (REPO_ROOT / "configs/train-long.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("crops_per_head: 2", "crops_per_head: 0"))
    with pytest.raises(ValueError, match="crops_per_head"):
        load_train_config(bad)


def test_autocast_bf16_auto_follows_the_cpu_and_a_forced_true_warns(tmp_path, monkeypatch, caplog):
    """train.autocast_bf16: "auto" is bfloat16 exactly where the CPU computes it natively (as
    model.cpu_bf16); true on a CPU without it still runs bfloat16 but warns (emulated, many times
    slower); false stays float32; any other word is refused when the config loads."""
    import logging

    import screener.infer as infer
    from screener.model.train import training_bf16

    for native in (True, False):
        monkeypatch.setattr(infer, "cpu_bf16_enabled",
                            lambda setting, native=native: native if setting == "auto" else setting)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="screener.model.train"):
            assert training_bf16("auto") is native
            assert training_bf16(False) is False
            assert training_bf16(True) is True
        assert ("emulated" in caplog.text) is (not native)
    text = (REPO_ROOT / "configs/train-brainstem.yaml").read_text()
    assert load_train_config(REPO_ROOT / "configs/train-brainstem.yaml").autocast_bf16 == "auto"
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("autocast_bf16: auto", "autocast_bf16: sometimes"))
    with pytest.raises(ValueError, match="autocast_bf16"):
        load_train_config(bad)


def test_annealed_learning_rate_is_cosine_between_the_ends():
    from dataclasses import replace

    from screener.model.train import TrainConfig, annealed_lr

    cfg = replace(TrainConfig(), learning_rate=1e-4, lr_final=1e-5, iterations=1000)
    assert annealed_lr(cfg, 0) == pytest.approx(1e-4)
    assert annealed_lr(cfg, 500) == pytest.approx(5.5e-5)
    assert annealed_lr(cfg, 1000) == pytest.approx(1e-5)
    assert annealed_lr(cfg, 5000) == pytest.approx(1e-5)
    assert annealed_lr(cfg, 250) > annealed_lr(cfg, 750)
    assert annealed_lr(replace(cfg, lr_final=None), 700) == 1e-4


def test_configs_starting_from_a_released_network_name_its_committed_file():
    """A config whose `init_from` is a released bundle's model.pt names it as COMMIT:PATH: the file
    in the working tree moves on with every release, the blob of that commit does not. The blob is
    the one that release's metadata.json recorded (sha256), i.e. the network the run started from."""
    import hashlib
    import json

    # the configs that started from 0.7.x; the others started from 0.6.1's network
    started_from = {"train-anatomy.yaml": "0.7.0", "train-anatomy-mirror.yaml": "0.7.0",
                    "train-continue.yaml": "0.7.0"}
    pinned = []
    for path in sorted((REPO_ROOT / "configs").glob("train*.yaml")):
        spec = load_train_config(path).init_from or ""
        if spec.endswith("models/model.pt") and ":" in spec:
            pinned.append((spec, started_from.get(path.name, "0.6.1")))
    assert len(pinned) >= 2, "train-brainstem.yaml and train-anatomy.yaml start from releases"
    if not (REPO_ROOT / ".git").exists():
        pytest.skip("no git history here")
    for spec, version in pinned:
        commit, path = spec.split(":", 1)
        blob = subprocess.run(["git", "-C", str(REPO_ROOT), "show", spec], capture_output=True,
                              check=True).stdout
        meta_path = path.replace("models/model.pt", "configs/metadata.json")
        meta = json.loads(subprocess.run(["git", "-C", str(REPO_ROOT), "show", f"{commit}:{meta_path}"],
                                         capture_output=True, check=True).stdout)
        assert hashlib.sha256(blob).hexdigest() == meta["sha256"]["models/model.pt"], spec
        assert meta["version"] == version, spec
