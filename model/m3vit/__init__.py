"""M³ViT golden model: configs, model, data, training, evaluation, checkpoint import."""

from .configs import CONFIGS, ModelConfig, TaskSpec, get_config
from .model import M3ViT, build_model, count_parameters

__all__ = ["CONFIGS", "M3ViT", "ModelConfig", "TaskSpec", "build_model", "count_parameters", "get_config"]
