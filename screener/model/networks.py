"""The abnormality network: a MONAI 3D U-Net over the 2 mm working grid.

Measured on this 2-core CPU (batch 1, 96^3, forward + backward): MONAI UNet with strided
convolutions (16-256 channels, 2.5 M parameters) 0.37 s/iteration; BasicUNet (1.4 M) 2.5 s.
The strided UNet gives ~7x more iterations per CPU hour, which the feasibility probes showed
is the binding constraint, so it is the default.

MONAI's UNet emits the classes from its top layer: a transposed convolution to `out_channels`,
instance norm and PReLU on those class maps, then one residual convolution. Each class map is
thus normalised per input window, so the lesion channel has the same spread in a window without
a lesion as in one with a large lesion. `top_norm` False drops that normalisation (same
parameters, same cost; weights up to 0.6.0 have it). A 16-feature head with a 1x1x1 class
convolution instead was measured at twice the step time (batch 2, one thread), so not pursued.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from screener.model.anatomy import N_CLASSES


@dataclass(frozen=True)
class NetworkConfig:
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    strides: tuple[int, ...] = (2, 2, 2, 2)
    num_res_units: int = 2
    norm: str = "instance"
    out_channels: int = N_CLASSES
    top_norm: bool = True
    # 1: the image; 2: the image and its reflection about the head's midsagittal plane
    # (screener/model/symmetry.py), so one-sided change reads as a difference between channels.
    in_channels: int = 1


def build_network(cfg: NetworkConfig) -> torch.nn.Module:
    from screener.monai_import import import_monai

    import_monai()  # without the optional modules it never uses
    from monai.networks.nets import UNet

    unet = UNet(spatial_dims=3, in_channels=cfg.in_channels, out_channels=cfg.out_channels,
                channels=tuple(cfg.channels), strides=tuple(cfg.strides),
                num_res_units=cfg.num_res_units, norm=cfg.norm)
    if not cfg.top_norm:  # the top layer: Convolution (transposed conv + ADN), ResidualUnit
        unet.model[-1][0].adn.N = torch.nn.Identity()
    return unet


def transfer_weights(net: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy into `net` every tensor of `state` (another network's state dict) whose name and
    shape match; a convolution of `net` with more input channels than the donor's takes the
    donor's kernels for the first ones and zeros for the rest, so it computes what the donor
    did. Returns the names of `net`'s tensors that were set."""
    own = net.state_dict()
    taken = {name: value for name, value in state.items()
             if name in own and own[name].shape == value.shape}
    for name, value in state.items():  # convolutions that gained input channels: new ones start at 0
        mine = own.get(name)
        if (name not in taken and mine is not None and mine.ndim == value.ndim == 5
                and mine.shape[0] == value.shape[0] and mine.shape[2:] == value.shape[2:]
                and mine.shape[1] > value.shape[1]):
            grown = torch.zeros_like(mine)
            grown[:, : value.shape[1]] = value
            taken[name] = grown
    own.update(taken)
    net.load_state_dict(own)
    return sorted(taken)


def input_multiple(cfg: NetworkConfig) -> int:
    """Input sizes must be divisible by this (product of the strides)."""
    m = 1
    for s in cfg.strides:
        m *= s
    return m


def fold_top_norm(net: torch.nn.Module, images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold the instance norm a donor network had on its class maps into the top transposed
    convolution of `net` (built with top_norm False, donor weights loaded), so the new network
    starts as the donor on an average window instead of with unnormalised class maps.

    The per-window channel means and standard deviations of the convolution's output over
    `images` (training crops, each (1, X, Y, Z)) are averaged, and the convolution is rescaled
    to emit (y - mean) / std. Returns (mean, std) per channel.
    """
    conv = net.model[-1][0].conv
    outs: list[torch.Tensor] = []
    hook = conv.register_forward_hook(lambda _m, _i, o: outs.append(o.detach()))
    try:
        with torch.no_grad():
            for img in images:
                net(img[None])
    finally:
        hook.remove()
    y = torch.cat(outs)  # (n, C, X, Y, Z)
    mean = y.mean(dim=(2, 3, 4)).mean(0)
    std = (y.var(dim=(2, 3, 4), unbiased=False) + 1e-5).sqrt().mean(0)
    with torch.no_grad():
        conv.weight.div_(std.view(1, -1, 1, 1, 1))  # ConvTranspose3d weight: (in, out, k, k, k)
        conv.bias.sub_(mean).div_(std)
    return mean, std
