"""The ViT backbone of M³ViT: patch embedding, CLS token, learned positions, pre-norm blocks.

Parameter names follow M³ViT's own code (``patch_embed.proj``, ``blocks.i.attn.qkv``, ...)
so official checkpoints map with few renames. Attention is written out (no fused kernel) so
that the float model computes exactly the operations the accelerator reorders.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configs import ModelConfig
from .moe import MoELayer


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block; the MLP is a task-routed MoE layer in odd blocks."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.is_moe = cfg.is_moe(layer)
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.ln_eps)
        self.attn = Attention(cfg.dim, cfg.num_heads)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.ln_eps)
        self.mlp: nn.Module = MoELayer(cfg) if self.is_moe else Mlp(cfg.dim, cfg.mlp_hidden)

    def forward(self, x: torch.Tensor, task_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = x + self.attn(self.norm1(x))
        if self.is_moe:
            y, balance = self.mlp(self.norm2(x), task_idx)
        else:
            y, balance = self.mlp(self.norm2(x)), x.new_zeros(())
        return x + y, balance


class PatchEmbed(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_chans, cfg.dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, num_patches, D], row-major over the grid


class Backbone(nn.Module):
    """Image → tokens after the last block ([B, 1 + num_patches, D], CLS first)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_tokens, cfg.dim))
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.depth))
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.pos_embed

    def forward(self, images: torch.Tensor, task_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.embed(images)
        balance = x.new_zeros(())
        for blk in self.blocks:
            x, b = blk(x, task_idx)
            balance = balance + b
        return x, balance
