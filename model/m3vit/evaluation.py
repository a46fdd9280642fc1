"""Evaluate a model on a dataset, next to the trivial predictors it has to beat.

The trivial predictors are fitted on training data: the majority class (semseg / parts), the
mean valid depth, the mean normal direction, and the majority label for binary tasks. Each is
evaluated with the same meters as the model, in the same pass.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .configs import IGNORE_INDEX, ModelConfig, TaskSpec
from .metrics import make_meter


@torch.no_grad()
def dataset_statistics(dataset: Dataset, tasks: Iterable[TaskSpec], limit: int | None = None) -> dict:
    """Per-task statistics of the targets: what the constant predictors predict."""
    tasks = list(tasks)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    hist = {t.name: torch.zeros(t.channels, dtype=torch.float64) for t in tasks if t.kind == "classification"}
    sums = {t.name: torch.zeros(t.channels, dtype=torch.float64) for t in tasks if t.kind != "classification"}
    counts = dict.fromkeys(sums, 0)
    for i in range(n):
        sample = dataset[i]
        for t in tasks:
            y = sample[t.name]
            if t.kind == "classification":
                v = y[y != IGNORE_INDEX].long()
                hist[t.name] += torch.bincount(v, minlength=t.channels)[: t.channels].double()
            elif t.kind == "regression":
                v = y[y > 0]
                sums[t.name] += v.double().sum()
                counts[t.name] += v.numel()
            elif t.kind == "normals":
                valid = y.abs().sum(0) > 0
                sums[t.name] += y[:, valid].double().sum(1)
                counts[t.name] += int(valid.sum())
            else:
                sums[t.name] += y.double().sum()
                counts[t.name] += y.numel()
    stats: dict[str, dict] = {}
    for t in tasks:
        if t.kind == "classification":
            stats[t.name] = {"majority_class": int(hist[t.name].argmax())}
        elif t.kind == "regression":
            stats[t.name] = {"mean": float(sums[t.name][0] / max(counts[t.name], 1))}
        elif t.kind == "normals":
            stats[t.name] = {"mean": torch.nn.functional.normalize(sums[t.name], dim=0).tolist()}
        else:
            stats[t.name] = {"positive_rate": float(sums[t.name][0] / max(counts[t.name], 1))}
    return stats


def constant_prediction(task: TaskSpec, stats: dict, batch: int, size: tuple[int, int]) -> torch.Tensor:
    """The trivial predictor's output, shaped like the model's."""
    h, w = size
    s = stats[task.name]
    if task.kind == "classification":
        out = torch.zeros(batch, task.channels, h, w)
        out[:, s["majority_class"]] = 1.0
        return out
    if task.kind == "regression":
        return torch.full((batch, 1, h, w), s["mean"])
    if task.kind == "normals":
        return torch.tensor(s["mean"], dtype=torch.float32).view(1, 3, 1, 1).expand(batch, 3, h, w)
    return torch.full((batch, 1, h, w), 1.0 if s["positive_rate"] > 0.5 else -1.0)


@torch.no_grad()
def evaluate(model: torch.nn.Module, cfg: ModelConfig, dataset: Dataset, stats: dict | None = None,
             batch_size: int = 16, device: str = "cpu", progress: bool = True) -> dict:
    """Per-task metrics of ``model`` (and of the constant predictors when ``stats`` is given)."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    meters = {t.name: make_meter(t) for t in cfg.tasks}
    base = {t.name: make_meter(t) for t in cfg.tasks} if stats else None
    for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        images = batch["image"].to(device)
        for t in cfg.tasks:
            target = batch[t.name]
            pred = model(images, t.name).cpu()
            meters[t.name].update(pred, target)
            if base is not None:
                base[t.name].update(constant_prediction(t, stats, images.shape[0], cfg.img_size), target)
    report: dict = {"images": len(dataset), "tasks": {}}
    for t in cfg.tasks:
        entry = {"model": meters[t.name].result()}
        if base is not None:
            entry["baseline"] = base[t.name].result()
            entry["baseline_fit"] = stats[t.name]
        report["tasks"][t.name] = entry
    return report
