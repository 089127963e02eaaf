"""Can the shipped network fit lesions it is shown again and again? (development diagnostic)

Every training run since 0.6.0 has stalled at the same lesion figures (validation lesion Dice
0.17-0.26; 69-76 of 93 calibration lesions hit), and heads drawn from the training label maps
fare no better than held-out ones. That is under-fitting, but of which kind: can this network,
at this grid, represent these lesions at all (then more of the same data and time should pay),
or does it fail even to memorise a handful (then the limit is the architecture, the grid or the
loss, and more CPU time will not help)?

The probe fixes K lesion crops (lesions measuring >= 10 mm, benchmark-style specs drawn on the
*training* label maps, each crop centred on its lesion) and K/3 lesion-free crops, starts from the
shipped weights and trains on only those crops with the training loss and optimiser, measuring
every --every iterations on the same crops (lesion Dice of the argmax, lesions hit by p >= 0.5,
the lesion probability's maximum inside the lesion) and on K crops drawn the same way from the
held-out label maps (how far memorising carries over). No weights are written.

    .venv/bin/python benchmarks/overfit_probe.py --k 12 --iterations 600   # about 20 minutes
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def lesion_crops(gen, run_seed: int, k: int, seed: int, space: str, roi, in_channels: int,
                 lesion: bool = True):
    """k (image, target, contrast, kind) crops centred on lesions measuring >= 10 mm (or, with
    lesion False, on the middle brain voxel of a lesion-free head)."""
    from screener.model import synth_eval
    from screener.model.symmetry import network_input

    out = []
    for s, spec in synth_eval.cases(20 * k, seed, space, run_seed, 10.0):
        if spec.lesion != lesion:
            continue
        smp = gen.sample(s, spec)
        t = smp.target
        if lesion:
            m = smp.lesion_mask.numpy()
            if not m.any() or (synth_eval.measured_diameter_mm(m, smp.affine) or 0.0) < 10.0:
                continue
            centre = np.round(np.argwhere(m).mean(0)).astype(int)
        else:
            brain = np.argwhere(t.numpy() > 0)
            centre = brain[len(brain) // 2]
        shape = np.array(t.shape)
        size = np.minimum(np.array(roi), shape)
        lo = np.clip(centre - size // 2, 0, shape - size)
        box = tuple(slice(int(a), int(a + b)) for a, b in zip(lo, size))
        img = network_input(smp.image, in_channels, gen.cfg.voxel_mm)
        out.append((img[(slice(None),) + box].contiguous(), t[box].contiguous(), spec.contrast,
                    spec.kind))
        if len(out) == k:
            break
    return out


def measure(net, crops, detail: bool = False) -> dict[str, float]:
    import torch

    from screener.model.anatomy import Tissue

    les = int(Tissue.LESION)
    dice, hit, peak = [], 0, []
    with torch.no_grad():
        for img, t, contrast, kind in crops:
            prob = torch.softmax(net(img[None]), 1)[0]
            truth = t == les
            if not truth.any():
                continue
            pred = prob.argmax(0) == les
            dice.append(float(2 * (truth & pred).sum() / max(1, int(truth.sum() + pred.sum()))))
            hit += int((prob[les][truth] >= 0.5).any())
            peak.append(float(prob[les][truth].max()))
            if detail:
                called = prob.argmax(0)[truth].bincount(minlength=len(Tissue)).float()
                called = called / called.sum()
                print(f"    {kind:13s} {contrast:5s} {int(truth.sum()):5d} voxels: Dice {dice[-1]:.2f}, "
                      f"peak p {peak[-1]:.2f}; voxels called "
                      + " ".join(f"{tt.name.lower()} {called[int(tt)]:.2f}" for tt in Tissue), flush=True)
    return {"dice": float(np.mean(dice)), "hit": hit, "n": len(dice), "peak": float(np.median(peak))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=12, help="fixed lesion crops (and k/3 lesion-free)")
    ap.add_argument("--iterations", type=int, default=600)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=5, help="calibration-space seed of the fixed crops (held-out crops: seed + 1); a development seed, never a judging one")
    ap.add_argument("--config", default="configs/train.yaml")
    args = ap.parse_args()

    import torch

    from screener.config import repo_path
    from screener.model.anatomy import Tissue, load_all
    from screener.model.bundle import load_bundle
    from screener.model.networks import NetworkConfig, build_network
    from screener.model.synth import SynthGenerator, held_out_config
    from screener.model.train import load_train_config, make_loss
    from screener.config import from_mapping

    torch.set_num_threads(2)
    torch.set_flush_denormal(True)
    cfg = load_train_config(args.config)
    meta, state = load_bundle(repo_path("weights/screener-synth-v1"))
    net = build_network(from_mapping(NetworkConfig, meta["network"]))
    net.load_state_dict(state)
    maps = load_all(cfg.synth.label_maps_dir, cfg.synth.max_label_maps)
    scfg = held_out_config(cfg.synth)  # benchmark-style lesions (no mimicry, no size emphasis)
    roi = tuple(cfg.crop_shape)
    train_gen = SynthGenerator(scfg, maps[: cfg.train_maps])
    held_gen = SynthGenerator(scfg, maps[cfg.train_maps:])
    chans = int(meta["network"].get("in_channels", 1))
    fixed = lesion_crops(train_gen, cfg.seed, args.k, args.seed, "calib", roi, chans)
    fixed += lesion_crops(train_gen, cfg.seed, max(1, args.k // 3), args.seed, "calib", roi, chans,
                          lesion=False)
    held = lesion_crops(held_gen, cfg.seed, args.k, args.seed + 1, "calib", roi, chans)
    print("fixed lesion crops: " + ", ".join(f"{c[3]}/{c[2]}" for c in fixed
                                           if (c[1] == int(Tissue.LESION)).any()))
    weights = torch.ones(cfg.network.out_channels)
    weights[-1] = cfg.lesion_class_weight
    loss_fn = make_loss(cfg, weights)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(args.seed)

    def report(it: int, t0: float) -> None:
        net.eval()
        last = it in (0, args.iterations)
        if last:
            print(f"  fixed crops at iteration {it}:")
        a = measure(net, fixed, last)
        b = measure(net, held)
        net.train()
        print(f"it {it:4d} ({time.perf_counter() - t0:5.0f} s): fixed crops lesion Dice {a['dice']:.3f}, "
              f"hit {a['hit']}/{a['n']}, median peak p {a['peak']:.2f} | held-out crops Dice "
              f"{b['dice']:.3f}, hit {b['hit']}/{b['n']}, median peak p {b['peak']:.2f}", flush=True)

    t0 = time.perf_counter()
    report(0, t0)
    net.train()
    for it in range(1, args.iterations + 1):
        idx = rng.choice(len(fixed), size=2, replace=False)
        x = torch.stack([fixed[i][0] for i in idx])
        y = torch.stack([fixed[i][1] for i in idx])[:, None]
        loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if it % args.every == 0:
            report(it, t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
