"""The complete M³ViT: task-routed MoE ViT backbone plus one dense head per task.

The backbone depends on the task (each MoE layer uses that task's router), so a multi-task
prediction runs one backbone pass per task, exactly as the accelerator does: at inference
only the chosen task's router and its selected experts run.
"""

from __future__ import annotations

import torch
from torch import nn

from .configs import ModelConfig
from .heads import DenseHead
from .vit import Backbone


class M3ViT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg)
        self.heads = nn.ModuleDict({t.name: DenseHead(cfg, t) for t in cfg.tasks})

    def check_images(self, images: torch.Tensor) -> None:
        want = (self.cfg.in_chans, *self.cfg.img_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != want:
            raise ValueError(
                f"model {self.cfg.name!r} expects images shaped [B, {want[0]}, {want[1]}, {want[2]}], "
                f"got {list(images.shape)}; resize the input or pick the config that matches it"
            )

    def forward(self, images: torch.Tensor, task: str, return_aux: bool = False):
        """Prediction for one task: [B, C_task, H, W] (logits, depth, or unit normals).

        With ``return_aux`` also the MoE balance loss summed over layers (0 in eval mode).
        """
        self.check_images(images)
        task_idx = self.cfg.task_index(task)
        tokens, balance = self.backbone(images, task_idx)
        pred = self.heads[task](tokens)
        return (pred, balance) if return_aux else pred

    def tokens(self, images: torch.Tensor, task: str) -> torch.Tensor:
        """Backbone output tokens for a task ([B, 1 + patches, D]): where Edge-MoE stops."""
        self.check_images(images)
        return self.backbone(images, self.cfg.task_index(task))[0]

    @torch.no_grad()
    def predict_all(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {t: self(images, t) for t in self.cfg.task_names}


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_model(cfg: ModelConfig, seed: int | None = None) -> M3ViT:
    if seed is not None:
        torch.manual_seed(seed)
    return M3ViT(cfg)
