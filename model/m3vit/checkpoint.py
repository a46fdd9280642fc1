"""Our own checkpoint format: model weights together with the config that built them."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from .configs import ModelConfig
from .model import M3ViT

FORMAT = "m3vit-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, or does not fit the model asked for."""


def first_non_finite(state: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN or ±Inf, or None."""
    for name, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return name
    return None


def save_checkpoint(path: str | Path, model: M3ViT, **extra) -> None:
    path = Path(path)
    state = model.state_dict()
    bad = first_non_finite(state)
    if bad is not None:
        raise CheckpointError(f"refusing to write {path}: weight {bad} holds NaN or Inf")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, "config": model.cfg.to_dict(), "model": state, **extra}
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        torch.save(payload, tmp)
        tmp.replace(path)  # never leave a half-written checkpoint under the real name
    except BaseException:  # Ctrl-C or a full disk mid-write: no stray .tmp either
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


CHECKPOINT_HINT = "give a .pt file written by m3vit-train or m3vit-import"


def load_torch_file(path: str | Path, what: str = "checkpoint", kind: str = "an m3vit checkpoint",
                    hint: str = CHECKPOINT_HINT, missing: str = "train one with `m3vit-train` first") -> object:
    """``torch.load`` of tensors only (never arbitrary pickles), every failure one :class:`CheckpointError` line.

    The one reader of PyTorch files that users name (checkpoints, official M³ViT weights): ``what`` names the
    input, ``kind`` what the file should be, ``hint`` what to give instead, ``missing`` what to do if it is absent."""
    path = Path(path)
    if path.is_dir():
        example = f", e.g. {path / 'last.pt'}" if what == "checkpoint" else ""
        raise CheckpointError(f"{what} {path} is a folder, not {kind}; give the file in it{example}")
    if not path.exists():
        raise CheckpointError(f"{what} {path} does not exist; {missing}")
    if not path.is_file() or path.stat().st_size == 0:  # /dev/null, a FIFO (reading it would block), empty
        raise CheckpointError(f"{what} {path} is empty or not a regular file; {hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        # torch's own message runs to several lines of advice about weights_only and pickles that does not
        # apply here (we never load arbitrary pickles): say in one line what the file is not
        raise CheckpointError(f"{what} {path} cannot be read ({type(exc).__name__}): it is truncated or not "
                              f"{kind}; {hint}") from exc


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    payload = load_torch_file(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an m3vit checkpoint (for official M³ViT or Edge-MoE weights "
                              f"use `m3vit-import`)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {payload.get('version')}, this code reads {VERSION}")
    if not isinstance(payload.get("model"), dict):
        raise CheckpointError(f"{path} holds no model weights")
    bad = first_non_finite(payload["model"])
    if bad is not None:
        raise CheckpointError(f"checkpoint {path}: weight {bad} holds NaN or Inf (a diverged run?); "
                              f"use an earlier checkpoint or retrain with a lower --lr")
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
