"""Preprocessing shared by training and inference (MONAI transforms).

The same intensity normalisation is applied to synthetic training heads and to real studies,
so that the network sees one intensity scale whatever the scanner, contrast or prior scaling
(raw scanner units, uint8 exports, z-scored skull-stripped volumes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class PreprocessConfig:
    voxel_mm: float = 2.0  # working grid of the network (isotropic, RAS)
    lower_percentile: float = 0.5
    upper_percentile: float = 99.5
    pad_multiple: int = 16  # network input sizes must be divisible by this
    max_grid_voxels: int = 8000000  # refuse absurd working grids (e.g. a 2 m field of view)


def normalize_intensity(img: torch.Tensor, cfg: PreprocessConfig | None = None) -> torch.Tensor:
    """Map the [lower, upper] percentiles of all voxels to [0, 1], clipped.

    Args:
        img: channel-first tensor (C, X, Y, Z).
    Returns:
        The normalised float32 tensor, same shape.
    """
    from screener.monai_import import import_monai

    import_monai()  # without the optional modules it never uses
    from monai.transforms import ScaleIntensityRangePercentiles

    c = cfg or PreprocessConfig()
    t = ScaleIntensityRangePercentiles(lower=c.lower_percentile, upper=c.upper_percentile,
                                       b_min=0.0, b_max=1.0, clip=True, channel_wise=True)
    out = t(img.float())
    return torch.as_tensor(np.asarray(out) if not isinstance(out, torch.Tensor) else out).float()
