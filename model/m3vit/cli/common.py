"""Argument helpers shared by the command-line tools.

Every tool: builds its parser with :func:`make_parser` (defaults shown in ``--help``, one-line
errors), checks every number's range while parsing (so nothing runs on a bad value), checks
``--out`` before any work, writes its outputs under a temporary name and renames them at the
end, and runs its work through :func:`run_cli` (user errors → one line and exit 2, Ctrl-C →
exit 130).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

import torch

from ..checkpoint import CheckpointError
from ..configs import CONFIGS, ModelConfig, get_config, restrict_tasks
from ..data import DATASETS, DatasetError
from ..import_weights import WeightImportError
from ..quant.pack import PackError
from ..training import TrainingError
from .args import (  # noqa: F401  (re-exported: the tools import them from here)
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USER_ERROR,
    HelpFormatter,
    Parser,
    Terminated,
    add_progress_arg,
    float_in,
    int_in,
    make_parser,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    run_with,
    seed,
    sigterm_as_interrupt,
)
from .outputs import OutputError

T = TypeVar("T")

# What a user can cause (a bad argument, a missing or malformed file, an unwritable folder):
# one line, exit code 2. Anything else is a bug and keeps its traceback.
USER_ERRORS = (KeyError, ValueError, OSError, DatasetError, CheckpointError, PackError, WeightImportError,
               TrainingError, OutputError)


def run_cli(prog: str, work: Callable[[], T]) -> T | None:
    """Run a tool's work: a user error is one line and exit code 2 (:func:`m3vit.cli.args.run_with`)."""
    return run_with(prog, work, USER_ERRORS)


def device_arg(text: str) -> str:
    """A torch device that exists on this machine (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use cpu or cuda") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available on this machine; use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available on this machine; use cpu")
    elif device.type != "cpu":
        raise argparse.ArgumentTypeError(f"{text!r}: unsupported device type; use cpu or cuda")
    return text


def add_model_args(p: argparse.ArgumentParser, *, config_default: str | None = "micro",
                   router_noise: bool = False) -> None:
    config_help = "named model config" if config_default else "named model config (default: micro)"
    p.add_argument("--config", default=config_default, choices=sorted(CONFIGS), help=config_help)
    p.add_argument("--tasks", default="", help="comma-separated subset of the config's tasks, in this order "
                                               "(empty: all)")
    p.add_argument("--router", choices=["multi_gate", "task_embedding"],
                   help="override the routing mode (default: the config's)")
    p.add_argument("--head", choices=["light", "pup"], help="override the dense head (default: the config's)")
    p.add_argument("--head-channels", type=positive_int, help="override the head width (default: the config's)")
    if router_noise:
        p.add_argument("--router-noise", type=nonnegative_float,
                       help="override the router noise std used while training (default: the config's)")


def add_data_args(p: argparse.ArgumentParser, samples_flag: str, samples_help: str, samples_default: int,
                  *, old_flag: str | None = None) -> None:
    """--data, --data-root, --<purpose>-samples and --data-seed.

    ``old_flag`` keeps an earlier spelling working without showing it in ``--help``."""
    dest = samples_flag.removeprefix("--").replace("-", "_")
    p.add_argument("--data", default="synthetic", choices=DATASETS,
                   help="dataset: the embedded synthetic scenes, or a real one under --data-root")
    p.add_argument("--data-root", help="folder of a real dataset (layouts in m3vit/data/real.py); "
                                       "not used with synthetic data")
    p.add_argument(samples_flag, dest=dest, type=positive_int, default=None,
                   help=f"{samples_help} (default: {samples_default} synthetic scenes, or every image of a "
                        f"real split)")
    if old_flag:
        p.add_argument(old_flag, dest=dest, type=positive_int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--data-seed", type=seed, default=None,
                   help="seed of the synthetic scenes (default: 0; synthetic data only)")
    p.set_defaults(**{f"_{dest}_default": samples_default})


def check_data_args(args: argparse.Namespace) -> None:
    """Options that only mean something for one kind of dataset: refuse them for the other."""
    if args.data == "synthetic":
        if args.data_root is not None:
            raise DatasetError(f"--data-root {args.data_root} is for the real datasets (cityscapes, nyud, pascal); "
                               f"synthetic scenes are generated, so drop --data-root or pick --data")
    elif args.data_seed is not None:
        raise DatasetError(f"--data-seed only seeds synthetic scenes; {args.data} has fixed images")


def sample_count(args: argparse.Namespace, dest: str) -> int | None:
    """The number of samples asked for: the flag, else the synthetic default (real data: all)."""
    value = getattr(args, dest)
    if value is not None:
        return value
    return getattr(args, f"_{dest}_default") if args.data == "synthetic" else None


def model_config_from_args(args: argparse.Namespace) -> ModelConfig:
    overrides = {k: v for k, v in (("router", args.router), ("head", args.head),
                                   ("head_channels", args.head_channels),
                                   ("router_noise_std", getattr(args, "router_noise", None))) if v is not None}
    cfg = get_config(args.config or "micro", **overrides)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"--tasks {args.tasks!r} names a task twice")
    return restrict_tasks(cfg, tasks)


def parse_task_weights(text: str) -> dict[str, float]:
    """'semseg=1,depth=0.5' → {'semseg': 1.0, 'depth': 0.5}."""
    out: dict[str, float] = {}
    for item in filter(None, text.split(",")):
        name, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"task weight {item!r} should look like name=value")
        try:
            out[name.strip()] = nonnegative_float(value)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"task weight {item!r}: {exc}") from None
    return out
