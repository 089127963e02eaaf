"""`screener train`: seeded, resumable CPU training of the abnormality network.

Every synthetic head is drawn from a seed derived from (run seed, "train", sample_offset + head
index), and its crops from that seed too, so a resumed run sees the same data stream as an
uninterrupted one. Label maps are split: the
first `train_maps` train the network; the rest are held out for validation, calibration and
the synthetic benchmark, which therefore never see a training head.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from screener.config import from_mapping, read_yaml, repo_path
from screener.model.networks import NetworkConfig
from screener.model.synth import SynthConfig

log = logging.getLogger(__name__)

SEED_SPACES = {"train": 1, "val": 2, "calib": 3, "bench": 4, "smoke": 5, "verify": 6}


@dataclass(frozen=True)
class TrainConfig:
    name: str = "screener-synth-v1"
    seed: int = 20261125
    run_dir: str = "checkpoints/screener-synth-v1"
    iterations: int = 40000
    threads: int = 2
    loader_workers: int = 1
    learning_rate: float = 1e-3
    # Crops per optimizer step. On this 2-core CPU a step of 2 crops (64x80x64, forward +
    # backward) took 0.43 s against 0.51 s for 1: 2.4x the samples per CPU-second.
    batch_size: int = 1
    weight_decay: float = 1e-5
    lesion_class_weight: float = 4.0
    # Extra recall-weighted term on the lesion channel alone: Tversky loss (alpha weighs false
    # positives, beta false negatives; beta > alpha rewards finding lesions). Weight 0 = off,
    # the DiceCE loss alone (training up to weights 0.4.0).
    lesion_tversky_weight: float = 0.0
    tversky_alpha: float = 0.3
    tversky_beta: float = 0.7
    # Crop-level detection term (multiple-instance): binary cross-entropy between the mean of the
    # crop's `crop_detection_ml` most lesion-like voxels (lesion softmax) and whether the crop
    # holds at least that volume of lesion. A lesion-free crop is pushed to have no confident
    # cluster of that size anywhere (what flags a study: decide's score saturates above about
    # that volume), which a voxel-wise loss barely sees. Crops holding some lesion but less than
    # that volume are left out of the term. Weight 0 = off (every run before configs/train-mil.yaml).
    crop_detection_weight: float = 0.0
    crop_detection_ml: float = 0.5
    # Hard negatives in lesion crops: binary cross-entropy pushing to 0 the mean of the
    # crop_detection_ml most lesion-like voxels farther than `hard_negative_margin_vox`
    # (chessboard) from every lesion voxel, in each crop that holds lesion. The crop-detection
    # term already asks this of lesion-free crops; a crop holding a lesion was free to carry a
    # confident false cluster elsewhere (a lesion-free head's top false finding lies by fluid,
    # benchmarks/top_false_findings.py --fluid; a 1-voxel tissue/fluid band covers half to two
    # thirds of a crop's brain and CSF, too broad to target, so the worst voxels are taken
    # instead). Weight 0 = off (every run before configs/train-hardneg.yaml).
    hard_negative_weight: float = 0.0
    hard_negative_margin_vox: int = 3
    # Run the training forward pass under CPU bfloat16 autocast (losses and optimizer stay
    # float32). On this machine's CPU (AVX512-BF16) a step of 2 crops took 0.61-0.73x the time
    # of float32 (benchmarks/network_batch.py --bf16). End to end (4 minutes each from the
    # committed checkpoint, 2026-12-02): 115.6 against 93.8 it/min (1.23x) once the generator
    # took 0.27 s per sample; before that the loop waited on the generator and gained nothing.
    # Against float32 on identical crops (400 iterations of 4 from the same start, 2026-12-02,
    # configs/train-long.yaml): mean loss, validation lesion and brain Dice equal to 3 decimals.
    # "auto": on where the CPU has AMX or AVX512-BF16 (infer.cpu_bf16_enabled), float32 elsewhere.
    # Without them bfloat16 is emulated: a resumed run of configs/train-brainstem.yaml on an AVX2
    # CPU (AMD EPYC, 2026-12-03) took 37 s an iteration against under 1 s, so `true` there warns.
    autocast_bf16: bool | str = False
    # Training crops cut from each synthetic head. The generator costs about as much per head
    # (0.27 s) as the network per crop under bf16, so a second crop of the same head doubles the
    # crops per CPU-second at the price of correlated crops. Crop 0 of a head is the crop a run
    # with 1 draws (same seed), so 1 keeps every earlier run's stream.
    crops_per_head: int = 1
    # Index of the first synthetic head of this run's stream: a run started from another run's
    # weights (init_from) with the same seed otherwise re-draws the heads that run trained on.
    sample_offset: int = 0
    # Cosine annealing of the learning rate from `learning_rate` at iteration 0 to `lr_final` at
    # `iterations` (None: constant, every run before configs/train-long.yaml).
    lr_final: float | None = None
    log_every: int = 50
    val_every: int = 500
    checkpoint_every: int = 250
    val_samples: int = 12
    train_maps: int = 17
    # Training crops of the synthetic head (voxels); None = whole grid. A crop holds most of a
    # brain at 2 mm and costs ~3x less per iteration than the 96x112x96 grid.
    crop_shape: tuple[int, int, int] | None = (64, 80, 64)
    p_crop_on_lesion: float = 0.5
    # A checkpoint (or a bundle's models/model.pt) whose matching tensors start a new run (no
    # checkpoint in run_dir yet), e.g. a network with a new head on the body of an earlier run;
    # see networks.transfer_weights.
    init_from: str | None = None
    # Or the uniform average of these checkpoints (files, or COMMIT:PATH from the repository's
    # history; bundle.average_checkpoints), when init_from is not set.
    init_average: tuple[str, ...] = ()
    synth: SynthConfig = field(default_factory=SynthConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)


def sample_seed(run_seed: int, space: str, index: int) -> int:
    """Seed of sample `index` in a seed space; spaces never overlap in practice."""
    ss = np.random.SeedSequence([run_seed, SEED_SPACES[space], index])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)


def load_train_config(path: str | Path, smoke: bool = False) -> TrainConfig:
    data = read_yaml(path)
    if "synth" in data and "label_maps_dir" in data["synth"]:
        maps_dir = data["synth"]["label_maps_dir"]
        if not Path(maps_dir).is_absolute():  # relative to the repository, not the working directory
            data["synth"]["label_maps_dir"] = str(repo_path(maps_dir).resolve())
    cfg = from_mapping(TrainConfig, data)
    if isinstance(cfg.autocast_bf16, str) and cfg.autocast_bf16 != "auto":
        raise ValueError(f"{path}: autocast_bf16 must be true, false or auto, "
                         f"not {cfg.autocast_bf16!r}")
    if cfg.crops_per_head < 1 or cfg.sample_offset < 0:
        raise ValueError(f"{path}: crops_per_head must be >= 1 and sample_offset >= 0, got "
                         f"{cfg.crops_per_head} and {cfg.sample_offset}")
    if smoke:
        import dataclasses

        cfg = dataclasses.replace(
            cfg, iterations=6, log_every=2, val_every=6, checkpoint_every=3, val_samples=1,
            loader_workers=0, train_maps=1, run_dir=cfg.run_dir + "-smoke",
            synth=dataclasses.replace(cfg.synth, max_label_maps=2, grid_shape=(48, 48, 48),
                                      voxel_mm=4.0),
            network=dataclasses.replace(cfg.network, channels=(4, 8, 16, 32, 64)))
    return cfg


class _Stream(torch.utils.data.IterableDataset):
    """Iterable of training samples from sample `start` on (picklable for DataLoader)."""

    def __init__(self, cfg: TrainConfig, start: int) -> None:
        super().__init__()
        self.cfg, self.start = cfg, start  # start: crops already drawn by this run

    def __iter__(self):
        from screener.model.anatomy import load_all
        from screener.model.symmetry import network_input
        from screener.model.synth import SynthGenerator

        torch.set_num_threads(1)
        torch.set_flush_denormal(True)
        maps = load_all(self.cfg.synth.label_maps_dir, self.cfg.synth.max_label_maps)
        gen = SynthGenerator(self.cfg.synth, maps[: self.cfg.train_maps])
        k = self.cfg.crops_per_head
        head, skip = divmod(self.start, k)
        while True:
            seed = sample_seed(self.cfg.seed, "train", self.cfg.sample_offset + head)
            s = gen.sample(seed)
            image = network_input(s.image, self.cfg.network.in_channels, self.cfg.synth.voxel_mm)
            for i in range(skip, k):
                yield crop(image, s.target, self.cfg, np.random.default_rng(seed + 1 + i))
            skip = 0
            head += 1


def crop(image, target, cfg: TrainConfig, rng: np.random.Generator):
    """A training crop: centred on a lesion voxel (when there is one) with probability
    p_crop_on_lesion, else on a random brain voxel."""
    from screener.model.anatomy import Tissue

    if cfg.crop_shape is None:
        return image, target
    shape = np.array(target.shape)
    size = np.minimum(np.array(cfg.crop_shape), shape)
    lesion = np.argwhere(target.numpy() == int(Tissue.LESION))
    if len(lesion) and rng.random() < cfg.p_crop_on_lesion:
        centre = lesion[rng.integers(len(lesion))]
    else:
        brain = np.argwhere(target.numpy()[::4, ::4, ::4] > 0) * 4
        centre = brain[rng.integers(len(brain))] if len(brain) else shape // 2
    lo = np.clip(centre - size // 2 + rng.integers(-8, 9, 3), 0, shape - size)
    box = tuple(slice(int(a), int(a + b)) for a, b in zip(lo, size))
    return image[(slice(None),) + box].contiguous(), target[box].contiguous()


def annealed_lr(cfg: TrainConfig, iteration: int) -> float:
    """Cosine annealing from cfg.learning_rate (iteration 0) to cfg.lr_final (cfg.iterations)."""
    if cfg.lr_final is None:
        return cfg.learning_rate
    t = min(1.0, max(0.0, iteration / max(1, cfg.iterations)))
    return float(cfg.lr_final + (cfg.learning_rate - cfg.lr_final) * 0.5 * (1.0 + np.cos(np.pi * t)))


def _atomic_torch_save(obj: Any, path: Path) -> None:
    import torch

    from screener.atomic import atomic_write

    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _validation_set(cfg: TrainConfig):
    from screener.model.anatomy import load_all
    from screener.model.synth import SynthGenerator, held_out_config

    maps = load_all(cfg.synth.label_maps_dir, cfg.synth.max_label_maps)
    held = maps[cfg.train_maps:] or maps[-1:]
    gen = SynthGenerator(held_out_config(cfg.synth), held)  # the same heads before and after mimicry
    import dataclasses

    from screener.model.symmetry import network_input

    samples = [gen.sample(sample_seed(cfg.seed, "val", i)) for i in range(cfg.val_samples)]
    return [dataclasses.replace(s, image=network_input(s.image, cfg.network.in_channels,
                                                       cfg.synth.voxel_mm)) for s in samples]


def _validate(net, val, roi: tuple[int, int, int] | None) -> dict[str, float]:
    import torch
    from screener.monai_import import import_monai

    import_monai()  # without the optional modules it never uses
    from monai.inferers import sliding_window_inference

    from screener.model.anatomy import Tissue

    net.eval()
    brain_d, les_d, les_det, les_n = [], [], 0, 0
    with torch.no_grad():
        for s in val:
            logits = (sliding_window_inference(s.image[None], roi, 2, net, overlap=0.5, mode="gaussian")
                      if roi is not None else net(s.image[None]))
            prob = torch.softmax(logits, 1)[0]
            pred = prob.argmax(0)
            brain_t = (s.target > 0) & (s.target != Tissue.CSF)
            brain_p = (pred > 0) & (pred != Tissue.CSF)
            brain_d.append(float(2 * (brain_t & brain_p).sum() / max(1, brain_t.sum() + brain_p.sum())))
            lt, lp = s.target == Tissue.LESION, pred == Tissue.LESION
            if lt.any():
                les_n += 1
                les_d.append(float(2 * (lt & lp).sum() / max(1, lt.sum() + lp.sum())))
                les_det += int((lt & lp).any())
    net.train()
    return {"brain_dice": float(np.mean(brain_d)), "lesion_dice": float(np.mean(les_d or [0])),
            "lesion_detected": les_det / max(1, les_n)}


def make_loss(cfg: TrainConfig, class_weights: torch.Tensor) -> Any:
    """DiceCE over all classes, plus (when cfg.lesion_tversky_weight > 0) a Tversky term on the
    lesion channel's softmax probability against the lesion mask, pooled over the batch."""
    from screener.monai_import import import_monai

    import_monai()  # without the optional modules it never uses
    from monai.losses import DiceCELoss, TverskyLoss

    from screener.model.anatomy import Tissue

    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True, weight=class_weights, batch=True)
    if (cfg.lesion_tversky_weight <= 0 and cfg.crop_detection_weight <= 0
            and cfg.hard_negative_weight <= 0):
        return dice_ce
    tversky = TverskyLoss(alpha=cfg.tversky_alpha, beta=cfg.tversky_beta, batch=True)
    lesion = int(Tissue.LESION)
    k = max(1, int(round(cfg.crop_detection_ml * 1000.0 / cfg.synth.voxel_mm**3)))

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p_lesion = torch.softmax(logits, 1)[:, lesion:lesion + 1]
        truth = (target == lesion).to(p_lesion.dtype)
        total = dice_ce(logits, target)
        if cfg.lesion_tversky_weight > 0:
            total = total + cfg.lesion_tversky_weight * tversky(p_lesion, truth)
        if cfg.crop_detection_weight > 0:
            total = total + cfg.crop_detection_weight * crop_detection_loss(p_lesion, truth, k)
        if cfg.hard_negative_weight > 0:
            total = total + cfg.hard_negative_weight * hard_negative_loss(
                p_lesion, truth, k, cfg.hard_negative_margin_vox)
        return total

    return loss


def crop_detection_loss(p_lesion: torch.Tensor, truth: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over the batch's decidable crops of BCE(mean of the k highest lesion probabilities,
    crop holds >= k lesion voxels); crops with 1 to k-1 lesion voxels are not decidable.
    p_lesion, truth: (B, 1, X, Y, Z). 0 when no crop is decidable."""
    import torch.nn.functional as F

    flat = p_lesion.flatten(1)
    top = flat.topk(min(k, flat.shape[1]), dim=1).values.mean(1).clamp(1e-6, 1.0 - 1e-6)
    n_lesion = truth.flatten(1).sum(1)
    label = (n_lesion >= k).to(top.dtype)
    use = ((n_lesion == 0) | (n_lesion >= k)).to(top.dtype)
    bce = F.binary_cross_entropy(top, label, reduction="none")
    return (bce * use).sum() / use.sum().clamp_min(1.0)


def hard_negative_loss(p_lesion: torch.Tensor, truth: torch.Tensor, k: int, margin_vox: int
                       ) -> torch.Tensor:
    """Mean over the batch's crops holding lesion of BCE(mean of the k highest lesion
    probabilities farther than margin_vox from every lesion voxel, 0). p_lesion, truth:
    (B, 1, X, Y, Z). 0 when no crop holds lesion or none has k voxels that far."""
    import torch.nn.functional as F

    near = F.max_pool3d(truth.float(), 2 * margin_vox + 1, stride=1, padding=margin_vox) > 0
    far = p_lesion.masked_fill(near, 0.0).flatten(1)
    n_far = (~near).flatten(1).sum(1)
    use = ((truth.flatten(1).sum(1) > 0) & (n_far >= k)).to(p_lesion.dtype)
    top = far.topk(min(k, far.shape[1]), dim=1).values.mean(1).clamp(1e-6, 1.0 - 1e-6)
    bce = F.binary_cross_entropy(top, torch.zeros_like(top), reduction="none")
    return (bce * use).sum() / use.sum().clamp_min(1.0)


def training_bf16(setting: bool | str) -> bool:
    """Whether the forward pass runs under bfloat16 autocast: train.autocast_bf16 is true, false or
    "auto" (on where the CPU computes bfloat16 natively, as model.cpu_bf16). A forced `true` on a
    CPU without AMX or AVX512-BF16 runs, emulated and many times slower, with a warning."""
    from screener.infer import cpu_bf16_enabled

    if isinstance(setting, str) and setting != "auto":
        raise ValueError(f"train.autocast_bf16 must be true, false or auto, not {setting!r}")
    native = cpu_bf16_enabled("auto")
    on = native if setting == "auto" else bool(setting)
    if on and not native:
        log.warning("autocast_bf16 is true but this CPU has neither AMX nor AVX512-BF16: bfloat16 "
                    "is emulated and training is many times slower than float32 (use auto)")
    log.info("training forward pass in %s", "bfloat16" if on else "float32")
    return on


def train(cfg: TrainConfig, max_minutes: float | None = None, run_dir: Path | None = None) -> Path:
    """Train (or resume) until cfg.iterations or max_minutes; returns the checkpoint path.
    Training runs with cfg.threads torch threads; the caller's thread count is restored after."""
    import torch

    threads = torch.get_num_threads()
    try:
        return _train(cfg, max_minutes, run_dir)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig, max_minutes: float | None, run_dir: Path | None) -> Path:
    import torch
    from tqdm import tqdm

    from screener.model.networks import build_network

    torch.set_num_threads(cfg.threads)
    torch.set_flush_denormal(True)
    bf16 = training_bf16(cfg.autocast_bf16)
    rd = repo_path(run_dir or cfg.run_dir)
    rd.mkdir(parents=True, exist_ok=True)
    ckpt_path = rd / "checkpoint.pt"
    torch.manual_seed(cfg.seed)
    net = build_network(cfg.network)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    start = 0
    samples = 0  # training samples drawn so far: the stream resumes from here
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["iteration"])
        samples = int(state.get("samples", start))  # checkpoints before batches: 1 per step
        # The config's learning rate rules on resume (the saved optimizer state carries the
        # rate it ran with), so a run can be annealed from its checkpoint.
        for group in opt.param_groups:
            group["lr"] = cfg.learning_rate
        log.warning("resuming %s at iteration %d, learning rate %g", cfg.name, start,
                    cfg.learning_rate)
    elif cfg.init_from or cfg.init_average:
        from screener.model.bundle import average_checkpoints, read_checkpoint
        from screener.model.networks import transfer_weights

        if cfg.init_from:  # a file, or COMMIT:PATH from the repository's history
            donor = read_checkpoint(cfg.init_from)
            donor = donor if "model" in donor else {"model": donor}  # a bundle's models/model.pt
        else:
            donor = average_checkpoints(list(cfg.init_average))
        taken = transfer_weights(net, donor["model"])
        log.warning("starting %s from %s: %d of %d tensors taken over", cfg.name,
                    cfg.init_from or f"the average of {len(cfg.init_average)} checkpoints",
                    len(taken), len(net.state_dict()))
        donor_norm = ((donor.get("config") or {}).get("network") or {}).get("top_norm", True)
        if donor_norm and not cfg.network.top_norm:
            from screener.model.networks import fold_top_norm

            crops = [pair[0] for pair, _ in zip(_Stream(cfg, 10**9), range(8))]
            mean, std = fold_top_norm(net, crops)
            torch.set_num_threads(cfg.threads)  # the stream, run here, set one thread
            log.warning("folded the donor's class-map instance norm into the top convolution "
                        "(mean %s, std %s over 8 crops)", mean.numpy().round(3), std.numpy().round(3))
    weights = torch.ones(cfg.network.out_channels)
    weights[-1] = cfg.lesion_class_weight
    loss_fn = make_loss(cfg, weights)
    stream = _Stream(cfg, samples)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=cfg.loader_workers,
                                         prefetch_factor=4 if cfg.loader_workers else None,
                                         worker_init_fn=_worker_ignores_sigterm)
    val = _validation_set(cfg)
    stop = {"flag": False}
    old = signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    t0 = time.time()
    it = start
    logf = open(rd / "log.jsonl", "a", encoding="utf-8")

    def save() -> None:
        _atomic_torch_save({"model": net.state_dict(), "optimizer": opt.state_dict(),
                            "iteration": it, "samples": samples, "config": _plain(cfg)},
                           ckpt_path)

    bar = tqdm(total=cfg.iterations, initial=start, desc="train", unit="it", dynamic_ncols=True)
    running = []
    try:
        batch: list[tuple[Any, Any]] = []
        for pair in loader:
            if it >= cfg.iterations or stop["flag"] or (
                    max_minutes is not None and time.time() - t0 > max_minutes * 60):
                break
            batch.append(pair)
            if len(batch) < cfg.batch_size:
                continue
            image = torch.stack([b[0] for b in batch])
            target = torch.stack([b[1] for b in batch])[:, None]
            drawn = len(batch)
            batch = []
            if cfg.lr_final is not None:
                for group in opt.param_groups:
                    group["lr"] = annealed_lr(cfg, it)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = net(image)
            loss = loss_fn(out.float(), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            it += 1
            samples += drawn  # counted once the step is done: an interrupted step redraws them
            running.append(float(loss.detach()))
            bar.update(1)
            if it % cfg.log_every == 0:
                rec = {"it": it, "samples": samples, "loss": float(np.mean(running)),
                       "minutes": (time.time() - t0) / 60}
                if cfg.lr_final is not None:
                    rec["lr"] = opt.param_groups[0]["lr"]
                running = []
                bar.set_postfix(loss=f"{rec['loss']:.3f}")
                if it % cfg.val_every == 0:
                    rec.update(_validate(net, val, cfg.crop_shape))
                    log.warning("validation at %d: %s", it, rec)
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
            if it % cfg.checkpoint_every == 0:
                save()
    finally:
        save()
        bar.close()
        logf.close()
        signal.signal(signal.SIGTERM, old)
    return ckpt_path


def _worker_ignores_sigterm(_worker_id: int) -> None:
    """A DataLoader worker leaves SIGTERM to the main process, which then stops after its step,
    saves and shuts the workers down. `pkill -f "screener train"` matches the workers too (same
    command line); a worker killed by it made the main process raise in the middle of a step
    (2026-12-07), saving a checkpoint whose sample count included the unfinished step."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _plain(cfg: TrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(cfg), default=list))


def run_train_cli(args: argparse.Namespace) -> int:
    cfg = load_train_config(args.config, smoke=args.smoke)
    average = getattr(args, "average", None)
    if average and not args.export:
        raise SystemExit("screener train: --average needs --export")
    if args.export:
        from screener.model.bundle import export_bundle

        ckpt = repo_path(args.run_dir or cfg.run_dir) / "checkpoint.pt"
        out = export_bundle(ckpt, Path(args.export), cfg, average_of=average,
                            config_path=str(args.config))
        print(f"exported {'the average of ' + ', '.join(average) if average else ckpt} -> {out}")
        return 0
    path = train(cfg, max_minutes=args.max_minutes,
                 run_dir=Path(args.run_dir) if args.run_dir else None)
    print(f"checkpoint: {path}")
    return 0
