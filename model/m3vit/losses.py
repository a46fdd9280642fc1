"""Per-task losses and their multi-task weighting.

semseg / parts: cross-entropy ignoring ``IGNORE_INDEX``; depth: L1 over valid pixels (> 0);
normals: L1 between unit vectors over valid pixels (non-zero target); edges / saliency:
class-balanced binary cross-entropy (edges are ~5% of pixels).
Weighting: fixed per-task weights, or learned homoscedastic uncertainty (Kendall et al. 2018).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configs import IGNORE_INDEX, TaskSpec


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    count = mask.sum()
    return (values * mask).sum() / count.clamp(min=1)


def task_loss(task: TaskSpec, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if task.kind == "classification":
        return F.cross_entropy(pred, target, ignore_index=IGNORE_INDEX)
    if task.kind == "regression":
        valid = (target > 0).float()
        return _masked_mean((pred - target).abs(), valid)
    if task.kind == "normals":
        valid = (target.abs().sum(dim=1, keepdim=True) > 0).float()
        return _masked_mean((pred - target).abs().sum(dim=1, keepdim=True), valid)
    if task.kind == "binary":
        pos = target.mean().clamp(1e-3, 1 - 1e-3)
        weight = torch.where(target > 0.5, 1 - pos, pos)  # balance positives and negatives
        return F.binary_cross_entropy_with_logits(pred, target, weight=weight) / (2 * pos * (1 - pos))
    raise ValueError(f"no loss for task kind {task.kind!r}")


class MultiTaskLoss(nn.Module):
    """Combine per-task losses; 'uncertainty' learns one log-variance per task."""

    def __init__(self, tasks: tuple[TaskSpec, ...], weights: dict[str, float] | None = None,
                 scheme: str = "fixed"):
        super().__init__()
        if scheme not in ("fixed", "uncertainty"):
            raise ValueError(f"loss weighting must be 'fixed' or 'uncertainty', got {scheme!r}")
        names = [t.name for t in tasks]
        weights = dict(weights or {})
        unknown = set(weights) - set(names)
        if unknown:
            raise ValueError(f"task weights given for unknown tasks {sorted(unknown)}; tasks are {names}")
        self.tasks = {t.name: t for t in tasks}
        self.weights = {n: float(weights.get(n, 1.0)) for n in names}
        self.scheme = scheme
        self.log_vars = nn.ParameterDict({n: nn.Parameter(torch.zeros(())) for n in names}) \
            if scheme == "uncertainty" else None

    def forward(self, task: str, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(weighted loss to optimise, raw task loss for logging)."""
        raw = task_loss(self.tasks[task], pred, target)
        if self.log_vars is None:
            return self.weights[task] * raw, raw.detach()
        s = self.log_vars[task]
        return self.weights[task] * (torch.exp(-s) * raw + s), raw.detach()
