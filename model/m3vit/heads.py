"""Per-task dense decoders.

Both heads drop the CLS token, apply a per-task LayerNorm, and reshape the patch tokens to
their grid (row-major, as PatchEmbed flattens them).

``light`` (default): 1x1 conv D→C, then ``LIGHT_STAGES`` × [bilinear ×2 → 3x3 conv C→C → ReLU],
a 1x1 classifier at grid×4, and a final bilinear resize to the input resolution. Only
LayerNorm, convolutions, ReLU and bilinear resizing: all run on the board's ARM cores with
numpy (or on the accelerator's linear unit as im2col matmuls later).

``pup``: M³ViT's progressive-upsampling head, 4 × [3x3 conv → ReLU → bilinear ×2] at width C,
then a 1x1 classifier at full resolution. Kept for the accuracy/FLOPs comparison.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configs import ModelConfig, TaskSpec
from .heads_np import LIGHT_STAGES, PUP_STAGES  # the shapes' one definition (torch-free)


def tokens_to_grid(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """[B, 1 + gh*gw, D] tokens (CLS first) → [B, D, gh, gw] feature map."""
    b, _, d = tokens.shape
    return tokens[:, 1:].transpose(1, 2).reshape(b, d, *grid)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class DenseHead(nn.Module):
    def __init__(self, cfg: ModelConfig, task: TaskSpec):
        super().__init__()
        self.kind = cfg.head
        self.task = task
        self.grid = cfg.grid
        self.out_size = cfg.img_size
        c = cfg.head_channels
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.ln_eps)
        if cfg.head == "light":
            self.reduce = nn.Conv2d(cfg.dim, c, kernel_size=1)
            self.stages = nn.ModuleList(nn.Conv2d(c, c, kernel_size=3, padding=1) for _ in range(LIGHT_STAGES))
        else:
            chans = [cfg.dim] + [c] * PUP_STAGES
            self.reduce = None
            self.stages = nn.ModuleList(
                nn.Conv2d(chans[i], chans[i + 1], kernel_size=3, padding=1) for i in range(PUP_STAGES)
            )
        self.classifier = nn.Conv2d(c, task.channels, kernel_size=1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = tokens_to_grid(self.norm(tokens), self.grid)
        if self.kind == "light":
            x = self.reduce(x)
            for conv in self.stages:
                x = F.relu(conv(upsample2(x)))
        else:
            for conv in self.stages:
                x = upsample2(F.relu(conv(x)))
        x = self.classifier(x)
        if x.shape[-2:] != self.out_size:
            x = F.interpolate(x, size=self.out_size, mode="bilinear", align_corners=False)
        if self.task.kind == "normals":
            x = F.normalize(x, dim=1)
        return x
