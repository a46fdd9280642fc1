"""Our own checkpoint format: model weights together with the config that built them."""

from __future__ import annotations

from pathlib import Path

import torch

from .configs import ModelConfig
from .model import M3ViT

FORMAT = "m3vit-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, or does not fit the model asked for."""


def save_checkpoint(path: str | Path, model: M3ViT, **extra) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, "config": model.cfg.to_dict(),
               "model": model.state_dict(), **extra}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint under the real name


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train one with `m3vit-train` first")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); "
                              f"it is truncated or not a PyTorch file") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an m3vit checkpoint (for official M³ViT or Edge-MoE weights "
                              f"use `m3vit-import`)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {payload.get('version')}, this code reads {VERSION}")
    return payload


def load_model(path: str | Path, expect: ModelConfig | None = None) -> tuple[M3ViT, dict]:
    """Build the model a checkpoint describes and load its weights."""
    payload = read_checkpoint(path)
    try:
        cfg = ModelConfig.from_dict(payload["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: its model config is invalid ({exc})") from exc
    if expect is not None and cfg != expect:
        raise CheckpointError(f"{path} holds model {cfg.name!r} with a different config than the "
                              f"{expect.name!r} requested")
    model = M3ViT(cfg)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit config {cfg.name!r}: {exc}") from exc
    return model, payload
