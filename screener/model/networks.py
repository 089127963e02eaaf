"""The abnormality network: a MONAI 3D U-Net over the 2 mm working grid.

Measured on this 2-core CPU (batch 1, 96^3, forward + backward): MONAI UNet with strided
convolutions (16-256 channels, 2.5 M parameters) 0.37 s/iteration; BasicUNet (1.4 M) 2.5 s.
The strided UNet gives ~7x more iterations per CPU hour, which the feasibility probes showed
is the binding constraint, so it is the default.
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


def build_network(cfg: NetworkConfig) -> torch.nn.Module:
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=1, out_channels=cfg.out_channels,
                channels=tuple(cfg.channels), strides=tuple(cfg.strides),
                num_res_units=cfg.num_res_units, norm=cfg.norm)


def input_multiple(cfg: NetworkConfig) -> int:
    """Input sizes must be divisible by this (product of the strides)."""
    m = 1
    for s in cfg.strides:
        m *= s
    return m
