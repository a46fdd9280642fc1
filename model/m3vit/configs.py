"""Named model configurations and task definitions.

One place defines every shape the rest of the toolkit uses: the PyTorch model, the FLOPs
accounting, the checkpoint importers and (later) the generated HLS config all read a
:class:`ModelConfig`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Literal

TaskKind = Literal["classification", "regression", "normals", "binary"]
RouterMode = Literal["multi_gate", "task_embedding"]
HeadKind = Literal["light", "pup"]

IGNORE_INDEX = 255  # label value for pixels without ground truth (semseg / parts)
# Image normalisation of every dataset (ImageNet statistics, as M³ViT's DeiT backbones use); torch-free here so
# the board's host runtime normalises pictures with the same numbers (m3vit.data.transforms uses them too).
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TaskSpec:
    """A dense prediction task: its name, how it is supervised, and its output channels."""

    name: str
    kind: TaskKind
    channels: int

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise ValueError(f"task {self.name!r}: channels must be >= 1, got {self.channels}")


def semseg(classes: int) -> TaskSpec:
    return TaskSpec("semseg", "classification", classes)


def human_parts(classes: int = 7) -> TaskSpec:
    return TaskSpec("human_parts", "classification", classes)


DEPTH = TaskSpec("depth", "regression", 1)
NORMALS = TaskSpec("normals", "normals", 3)
EDGES = TaskSpec("edges", "binary", 1)
SALIENCY = TaskSpec("saliency", "binary", 1)


_SIZE_FIELDS = ("patch_size", "in_chans", "dim", "depth", "num_heads", "mlp_hidden", "num_experts", "expert_hidden",
                "top_k", "task_embed_dim", "head_channels")


@dataclass(frozen=True)
class ModelConfig:
    """Shapes and routing options of an M³ViT model.

    MoE layers are the odd blocks (1, 3, 5, ...), as in Edge-MoE's accelerated model.
    """

    name: str
    img_size: tuple[int, int]  # (H, W)
    tasks: tuple[TaskSpec, ...]
    patch_size: int = 16
    in_chans: int = 3
    dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_hidden: int = 768
    num_experts: int = 16
    expert_hidden: int = 384
    top_k: int = 2
    router: RouterMode = "multi_gate"
    task_embed_dim: int = 64  # only for router == "task_embedding"
    router_noise_std: float = 0.0  # V-MoE noise; 0 at M3ViT's published settings
    balance_loss_weight: float = 0.01  # weight of CV²(importance) + CV²(load)
    head: HeadKind = "light"
    head_channels: int = 64
    ln_eps: float = 1e-6

    def __post_init__(self) -> None:
        # sizes first: a 0 (an edited pack manifest) would be a ZeroDivisionError in the checks below
        sizes = {n: getattr(self, n) for n in _SIZE_FIELDS} | {"img_size": self.img_size}
        bad = [f"{n} {v!r}" for n, v in sizes.items()
               if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1
                          for x in (v if n == "img_size" and isinstance(v, (tuple, list)) else (v,)))]
        if bad or len(self.img_size) != 2:
            raise ValueError(f"invalid ModelConfig {self.name!r}: sizes must be integers of 1 or more (img_size two "
                             f"of them), got {', '.join(bad) or f'img_size {self.img_size!r}'}")
        h, w = self.img_size
        problems = []
        if h % self.patch_size or w % self.patch_size:
            problems.append(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.dim % self.num_heads:
            problems.append(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if not 1 <= self.top_k <= self.num_experts:
            problems.append(f"top_k {self.top_k} must be in [1, num_experts={self.num_experts}]")
        if not self.tasks:
            problems.append("at least one task is required")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            problems.append(f"task names must be unique, got {names}")
        if self.router not in ("multi_gate", "task_embedding"):
            problems.append(f"router must be 'multi_gate' or 'task_embedding', got {self.router!r}")
        if self.head not in ("light", "pup"):
            problems.append(f"head must be 'light' or 'pup', got {self.head!r}")
        if problems:
            raise ValueError(f"invalid ModelConfig {self.name!r}: " + "; ".join(problems))

    # Derived shapes -------------------------------------------------------------------------
    @property
    def grid(self) -> tuple[int, int]:
        return self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size

    @property
    def num_patches(self) -> int:
        gh, gw = self.grid
        return gh * gw

    @property
    def num_tokens(self) -> int:
        return self.num_patches + 1  # + CLS

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def moe_layers(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.depth) if i % 2 == 1)

    def is_moe(self, layer: int) -> bool:
        return layer % 2 == 1

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def task(self, name: str) -> TaskSpec:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(f"unknown task {name!r}; this model has tasks {list(self.task_names)}")

    def task_index(self, name: str) -> int:
        return self.task_names.index(self.task(name).name)

    # Serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["img_size"] = list(self.img_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        d["img_size"] = tuple(d["img_size"])
        d["tasks"] = tuple(TaskSpec(**t) for t in d["tasks"])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {sorted(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)


# Synthetic-scene classes (see m3vit.data.synthetic): sky, ground, box, sphere, pole, cone.
SYNTHETIC_CLASSES = 6

CONFIGS: dict[str, ModelConfig] = {
    # Small enough for unit tests and a few-minute CPU demo.
    "micro": ModelConfig(
        name="micro",
        img_size=(64, 128),
        tasks=(semseg(SYNTHETIC_CLASSES), DEPTH, NORMALS),
        dim=64,
        depth=4,
        num_heads=2,
        mlp_hidden=128,
        num_experts=4,
        expert_hidden=64,
        top_k=2,
        head_channels=32,
    ),
    # Exactly Edge-MoE's accelerated model (Cityscapes 128x256, semseg 19 + depth).
    "m3vit-tiny": ModelConfig(
        name="m3vit-tiny",
        img_size=(128, 256),
        tasks=(semseg(19), DEPTH),
        dim=192,
        depth=12,
        num_heads=3,
        mlp_hidden=768,
        num_experts=16,
        expert_hidden=384,
        top_k=2,
    ),
    # M3ViT's headline model on NYUD-v2 (semseg 40 + depth).
    "m3vit-small": ModelConfig(
        name="m3vit-small",
        img_size=(480, 640),
        tasks=(semseg(40), DEPTH),
        dim=384,
        depth=12,
        num_heads=12,
        mlp_hidden=1536,
        num_experts=16,
        expert_hidden=384,
        top_k=4,
        head_channels=128,
    ),
    # The same backbone on PASCAL-Context's five tasks.
    "m3vit-small-pascal": ModelConfig(
        name="m3vit-small-pascal",
        img_size=(512, 512),
        tasks=(semseg(21), human_parts(7), SALIENCY, EDGES, NORMALS),
        dim=384,
        depth=12,
        num_heads=12,
        mlp_hidden=1536,
        num_experts=16,
        expert_hidden=384,
        top_k=4,
        head_channels=128,
    ),
}


def get_config(name: str, **overrides) -> ModelConfig:
    """Return a named config, optionally with fields replaced."""
    try:
        cfg = CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown model config {name!r}; choose one of {sorted(CONFIGS)}") from None
    return cfg.replace(**overrides) if overrides else cfg


def restrict_tasks(cfg: ModelConfig, names: list[str] | tuple[str, ...] | None) -> ModelConfig:
    """Keep only the named tasks (in the order given)."""
    if not names:
        return cfg
    return cfg.replace(tasks=tuple(cfg.task(n) for n in names))


__all__ = [
    "CONFIGS",
    "DEPTH",
    "EDGES",
    "IGNORE_INDEX",
    "NORMALS",
    "SALIENCY",
    "ModelConfig",
    "TaskSpec",
    "get_config",
    "human_parts",
    "restrict_tasks",
    "semseg",
]
