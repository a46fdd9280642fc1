"""Argument helpers shared by the command-line tools."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TypeVar

from ..checkpoint import CheckpointError
from ..configs import CONFIGS, ModelConfig, get_config, restrict_tasks
from ..data import DATASETS, DatasetError
from ..import_weights import WeightImportError
from ..quant.pack import PackError

T = TypeVar("T")

# What a user can cause (a bad argument, a missing or malformed file): one line, exit code 2.
# Anything else is a bug and keeps its traceback.
USER_ERRORS = (KeyError, ValueError, DatasetError, CheckpointError, PackError, WeightImportError)


def run_cli(prog: str, work: Callable[[], T]) -> T | None:
    """Run a tool's work; on a user error print ``prog: error: ...`` and return None."""
    try:
        return work()
    except USER_ERRORS as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"{prog}: error: {message}", file=sys.stderr)
        return None


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="micro", choices=sorted(CONFIGS), help="named model config")
    p.add_argument("--tasks", default="", help="comma-separated subset of the config's tasks (default: all)")
    p.add_argument("--router", choices=["multi_gate", "task_embedding"], help="override the routing mode")
    p.add_argument("--head", choices=["light", "pup"], help="override the dense head")
    p.add_argument("--head-channels", type=int, help="override the head width")
    p.add_argument("--router-noise", type=float, help="override the router noise std (training only)")


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="synthetic", choices=DATASETS, help="dataset (default: embedded synthetic)")
    p.add_argument("--data-root", help="folder of a real dataset (see m3vit/data/real.py for layouts)")
    p.add_argument("--num-samples", type=int, default=512, help="synthetic scenes in the split")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic scenes")


def model_config_from_args(args: argparse.Namespace) -> ModelConfig:
    overrides = {k: v for k, v in (("router", args.router), ("head", args.head),
                                   ("head_channels", args.head_channels),
                                   ("router_noise_std", args.router_noise)) if v is not None}
    cfg = get_config(args.config, **overrides)
    tasks = [t for t in args.tasks.split(",") if t]
    return restrict_tasks(cfg, tasks)


def parse_task_weights(text: str) -> dict[str, float]:
    """'semseg=1,depth=0.5' → {'semseg': 1.0, 'depth': 0.5}."""
    out: dict[str, float] = {}
    for item in filter(None, text.split(",")):
        name, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"task weight {item!r} should look like name=value")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"task weight {item!r}: {value!r} is not a number") from None
    return out
