"""Datasets: the embedded synthetic scenes (default) and loaders for real data folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..configs import ModelConfig
from .real import NYUDMT, CityscapesMT, DatasetError, PascalContextMT
from .synthetic import SyntheticScenes

DATASETS = ("synthetic", "cityscapes", "nyud", "pascal")

# Synthetic splits use disjoint seeds so validation scenes are never trained on.
SYNTHETIC_SPLIT_SEEDS = {"train": 0, "val": 1_000_003, "test": 2_000_003}


def build_dataset(
    name: str,
    split: str,
    cfg: ModelConfig,
    root: str | Path | None = None,
    length: int = 512,
    seed: int = 0,
) -> Dataset:
    """The dataset ``name`` for ``split``, producing the tasks of ``cfg`` at its input size."""
    tasks = cfg.task_names
    if name == "synthetic":
        if split not in SYNTHETIC_SPLIT_SEEDS:
            raise ValueError(f"synthetic split must be one of {list(SYNTHETIC_SPLIT_SEEDS)}, got {split!r}")
        return SyntheticScenes(length, cfg.img_size, tasks, seed=seed + SYNTHETIC_SPLIT_SEEDS[split])
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {list(DATASETS)}")
    if root is None:
        raise DatasetError(f"dataset {name!r} needs --data-root pointing at its folder")
    if name == "cityscapes":
        classes = cfg.task("semseg").channels if "semseg" in tasks else 19
        return CityscapesMT(root, split, tasks, cfg.img_size, num_classes=classes)
    if name == "nyud":
        return NYUDMT(root, split, tasks, cfg.img_size)
    return PascalContextMT(root, split, tasks, cfg.img_size)


def first_images(dataset: Dataset, count: int) -> np.ndarray:
    """The first ``count`` images of a dataset as one float array [N, C, H, W] (calibration, dumps)."""
    return torch.stack([dataset[i]["image"] for i in range(min(count, len(dataset)))]).numpy()


__all__ = ["DATASETS", "NYUDMT", "CityscapesMT", "DatasetError", "PascalContextMT", "SyntheticScenes",
           "build_dataset", "first_images"]
