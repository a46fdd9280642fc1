"""Image normalisation and label resizing shared by every dataset.

One normalisation for all data (ImageNet statistics, as M³ViT's DeiT backbones use), so the
accelerator's input quantiser sees one distribution whatever the source.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..configs import IMAGE_MEAN as MEAN
from ..configs import IMAGE_STD as STD


def normalize_image(image: torch.Tensor) -> torch.Tensor:
    """[3, H, W] float image in [0, 1] → normalised float32."""
    mean = torch.tensor(MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32).view(3, 1, 1)
    return (image.float() - mean) / std


def denormalize_image(image: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize_image`, clipped to [0, 1] (for pictures)."""
    mean = torch.tensor(MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32).view(3, 1, 1)
    return (image.float() * std + mean).clamp(0, 1)


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[C, H, W] float → [C, *size], bilinear."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False)[0]


def resize_nearest(label: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[H, W] or [C, H, W] labels → same rank at ``size``, nearest neighbour (keeps label values)."""
    if tuple(label.shape[-2:]) == tuple(size):
        return label
    squeeze = label.ndim == 2
    x = label[None, None] if squeeze else label[None]
    out = F.interpolate(x.float(), size=size, mode="nearest")[0]
    out = out[0] if squeeze else out
    return out.to(label.dtype)
