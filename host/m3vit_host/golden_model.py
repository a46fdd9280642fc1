"""The float golden model on the workstation (PyTorch): ``compare --checkpoint`` and ``m3vit-run golden``.

Never imported by the board's lean runtime: everything here needs the workstation package (torch,
the model, the datasets). It yields the same :class:`~m3vit_host.golden.GoldenBatch` as a golden file.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from m3vit.checkpoint import load_model
from m3vit.cli.common import check_data_args, sample_count
from m3vit.configs import ModelConfig, TaskSpec, restrict_tasks
from m3vit.data import build_dataset
from m3vit.provenance import sha256_file
from m3vit.quant.pack import Pack

from .errors import HostError
from .golden import GoldenBatch, GoldenSet, golden_meta


def golden_model(checkpoint: str | Path, pack_path: str | Path, cfg: ModelConfig) -> torch.nn.Module:
    model, _ = load_model(checkpoint)
    if model.cfg.replace(tasks=cfg.tasks) != cfg or not set(cfg.task_names) <= set(model.cfg.task_names):
        raise HostError(f"golden checkpoint {checkpoint} holds model {model.cfg.name!r}, which is not the "
                        f"model of pack {pack_path} ({cfg.name!r}): pass the checkpoint the pack was exported from")
    return model.eval()


def dataset_for(args: argparse.Namespace, cfg: ModelConfig, tasks: list[TaskSpec] | None = None):
    """The dataset sample ``args`` names, providing the tasks compared (Cityscapes has no normals)."""
    check_data_args(args)
    if tasks is not None:
        cfg = restrict_tasks(cfg, [t.name for t in tasks])
    return build_dataset(args.data, args.split, cfg, args.data_root, sample_count(args, "val_samples"),
                         seed=args.data_seed or 0)


@torch.no_grad()
def model_batches(model: torch.nn.Module, dataset, tasks: list[TaskSpec], batch_size: int) -> Iterator[GoldenBatch]:
    index = 0
    for batch in DataLoader(dataset, batch_size=batch_size):
        images = batch["image"]
        yield GoldenBatch(index, images.numpy(), {t.name: model(images, t.name).numpy() for t in tasks},
                          {t.name: batch[t.name].numpy() for t in tasks})
        index += len(images)


def build_golden(args: argparse.Namespace, pack: Pack, tasks: list[TaskSpec]) -> GoldenSet:
    """The float model's outputs on the dataset sample ``args`` names, with the provenance hashes."""
    dataset = dataset_for(args, pack.cfg, tasks)
    model = golden_model(args.checkpoint, args.pack, pack.cfg)
    parts = list(model_batches(model, dataset, tasks, args.batch_size))
    meta = golden_meta(pack.cfg.replace(tasks=tuple(tasks)), pack, sha256_file(args.checkpoint),
                       {"checkpoint": str(args.checkpoint), "pack": str(args.pack), "data": args.data,
                        "split": args.split, "data_seed": args.data_seed or 0, "samples": len(dataset)})
    return GoldenSet(meta, np.concatenate([b.images for b in parts]),
                     {t.name: np.concatenate([b.heads[t.name] for b in parts]) for t in tasks},
                     {t.name: np.concatenate([b.targets[t.name] for b in parts]) for t in tasks})
