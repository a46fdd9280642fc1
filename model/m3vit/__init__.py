"""M³ViT golden model: configs, model, data, training, evaluation, checkpoint import.

The model (PyTorch) loads on first use of ``M3ViT``/``build_model``/``count_parameters``, so the
torch-free modules the board's host runtime ships (configs, quant formats, pack reading, the
integer reference, hw.interface) import without PyTorch.
"""

from __future__ import annotations

from typing import Any

from .configs import CONFIGS, ModelConfig, TaskSpec, get_config

_MODEL_NAMES = ("M3ViT", "build_model", "count_parameters")


def __getattr__(name: str) -> Any:
    if name in _MODEL_NAMES:
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CONFIGS", "M3ViT", "ModelConfig", "TaskSpec", "build_model", "count_parameters", "get_config"]
