"""Crops per training step and tiles per inference call, each against one at a time.

On a small CPU a batch of one leaves threads idle inside each layer; this measures what the
shipped network costs per sample at batch 1, 2 and 4 (peer: batch 1, same run):
- training: forward + backward + AdamW step of DiceCE on 64x80x64 crops (configs/train.yaml
  batch_size);
- inference: MONAI sliding-window inference over a 96x112x96 head box in 64x80x64 tiles at
  overlap 0.5 (model.sw_batch_size).
Prints seconds per sample, the ratio to batch 1 and the peak RSS of the process so far.

    .venv/bin/python benchmarks/network_batch.py [--repeats 4] [--batches 1 2 4] [--bf16]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true",
                    help="also time each training batch and the inference under CPU bfloat16 "
                         "autocast (train.autocast_bf16), against float32 in the same run")
    args = ap.parse_args()

    import torch
    from monai.inferers import sliding_window_inference
    from monai.losses import DiceCELoss

    from screener.model.networks import NetworkConfig, build_network

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = build_network(NetworkConfig())
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)

    def rss_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    def timed(step, n: int) -> float:
        step()  # warm-up: kernels and allocations for this shape
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
        return statistics.median(times) / n

    print(f"training step, 64x80x64 crops, {args.threads} threads (median of {args.repeats})")
    base = None
    for b in args.batches:
        x = torch.rand(b, 1, 64, 80, 64)
        y = torch.randint(0, NetworkConfig().out_channels, (b, 1, 64, 80, 64))

        def step(bf16: bool = False) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = net(x)
            loss = loss_fn(out.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        s = timed(step, b)
        base = base or s
        print(f"  batch {b}: {s:.3f} s/crop, {base / s:.2f}x the crops per second of batch 1, "
              f"peak RSS {rss_mb():.0f} MB")
        if args.bf16:
            sb = timed(lambda: step(True), b)
            print(f"  batch {b}, bf16 autocast: {sb:.3f} s/crop, {sb / s:.2f}x the time of "
                  f"float32 at batch {b}, peak RSS {rss_mb():.0f} MB")
    net.eval()
    box = torch.rand(1, 1, 96, 112, 96)
    print("sliding-window inference, 96x112x96 box, 64x80x64 tiles, overlap 0.5")
    base = None
    with torch.no_grad():
        for b in args.batches:
            s = timed(lambda: sliding_window_inference(box, (64, 80, 64), b, net, overlap=0.5,
                                                       mode="gaussian"), 1)
            base = base or s
            print(f"  sw_batch_size {b}: {s:.2f} s/box, {base / s:.2f}x the speed of 1 at a "
                  f"time, peak RSS {rss_mb():.0f} MB")
            if args.bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    sb = timed(lambda: sliding_window_inference(
                        box, (64, 80, 64), b, net, overlap=0.5, mode="gaussian"), 1)
                print(f"  sw_batch_size {b}, bf16 autocast: {sb:.2f} s/box, {sb / s:.2f}x the "
                      f"time of float32")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
