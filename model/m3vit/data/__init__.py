"""Datasets: the embedded synthetic scenes (default) and loaders for real data folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

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
    length: int | None = None,
    seed: int = 0,
) -> Dataset:
    """The dataset ``name`` for ``split``, producing the tasks of ``cfg`` at its input size.

    ``length``: the number of synthetic scenes (None: 512); for a real dataset, its first ``length`` images
    (None: all of them)."""
    tasks = cfg.task_names
    if length is not None and length < 1:
        raise ValueError(f"a dataset needs at least 1 sample, got {length}")
    if name == "synthetic":
        if root is not None:
            raise DatasetError(f"synthetic scenes are generated, they have no folder: drop --data-root {root} "
                               f"or choose a real dataset with --data")
        if split not in SYNTHETIC_SPLIT_SEEDS:
            raise ValueError(f"synthetic split must be one of {list(SYNTHETIC_SPLIT_SEEDS)}, got {split!r}")
        return SyntheticScenes(512 if length is None else length, cfg.img_size, tasks,
                               seed=seed + SYNTHETIC_SPLIT_SEEDS[split])
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {list(DATASETS)}")
    if root is None:
        raise DatasetError(f"dataset {name!r} needs --data-root pointing at its folder")
    if name == "cityscapes":
        classes = cfg.task("semseg").channels if "semseg" in tasks else 19
        data: Dataset = CityscapesMT(root, split, tasks, cfg.img_size, num_classes=classes)
    elif name == "nyud":
        data = NYUDMT(root, split, tasks, cfg.img_size)
    else:
        data = PascalContextMT(root, split, tasks, cfg.img_size)
    if length is not None and length < len(data):
        data = Subset(data, range(length))
    return data


def first_images(dataset: Dataset, count: int) -> np.ndarray:
    """The first ``count`` images of a dataset as one float array [N, C, H, W] (calibration, dumps)."""
    return torch.stack([dataset[i]["image"] for i in range(min(count, len(dataset)))]).numpy()


__all__ = ["DATASETS", "NYUDMT", "CityscapesMT", "DatasetError", "PascalContextMT", "SyntheticScenes",
           "build_dataset", "first_images"]
