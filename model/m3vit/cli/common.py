"""Argument helpers shared by the command-line tools.

Every tool: builds its parser with :func:`make_parser` (defaults shown in ``--help``, one-line
errors), checks every number's range while parsing (so nothing runs on a bad value), checks
``--out`` before any work, writes its outputs under a temporary name and renames them at the
end, and runs its work through :func:`run_cli` (user errors → one line and exit 2, Ctrl-C →
exit 130).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import NoReturn, TypeVar

import torch

from ..checkpoint import CheckpointError
from ..configs import CONFIGS, ModelConfig, get_config, restrict_tasks
from ..data import DATASETS, DatasetError
from ..import_weights import WeightImportError
from ..quant.pack import PackError
from ..training import TrainingError
from .outputs import OutputError

T = TypeVar("T")

# What a user can cause (a bad argument, a missing or malformed file, an unwritable folder):
# one line, exit code 2. Anything else is a bug and keeps its traceback.
USER_ERRORS = (KeyError, ValueError, OSError, DatasetError, CheckpointError, PackError, WeightImportError,
               TrainingError, OutputError)
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a process stopped by Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, a CI runner, a scheduler), raised where the program is, like Ctrl-C.

    A KeyboardInterrupt subclass so that every clean-up written for Ctrl-C (staged output folders removed,
    a training step saved) runs for SIGTERM too; Python's default for SIGTERM would skip them all."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` (main thread only; elsewhere signals cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_cli(prog: str, work: Callable[[], T]) -> T | None:
    """Run a tool's work; on a user error print ``prog: error: ...`` and return None.

    Ctrl-C ends the tool with exit code 130 and SIGTERM with 143, each with one line (the work has already
    left its last good state behind: outputs are only renamed into place when complete)."""
    try:
        with sigterm_as_interrupt():
            return work()
    except USER_ERRORS as exc:
        print(f"{prog}: error: {_message(exc)}", file=sys.stderr)
        return None
    except Terminated:
        print(f"{prog}: terminated (SIGTERM); nothing half-written was kept", file=sys.stderr)
        raise SystemExit(EXIT_TERMINATED) from None
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after every option's help, the module docstring kept as written.

    An unset default (None, off, empty) is not shown: the help line says what happens then."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default in ("", {}):
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def make_parser(prog: str, doc: str | None) -> Parser:
    return Parser(prog=prog, description=doc, formatter_class=HelpFormatter)


# Range-checked argument types: argparse prints "argument --x: <message>" and exits 2. -----------

def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def nonnegative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def int_in(lo: int, hi: int, why: str = "") -> Callable[[str], int]:
    """An argparse type for an integer in [lo, hi]; ``why`` says what the upper bound protects."""

    def parse(text: str) -> int:
        value = _int(text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi}{why}, got {text}")
        return value

    return parse


def float_in(lo: float, hi: float, why: str = "", *, open_low: bool = True) -> Callable[[str], float]:
    """An argparse type for a finite number in (lo, hi] (or [lo, hi] with ``open_low=False``)."""

    def parse(text: str) -> float:
        value = _float(text)
        if value > hi or value < lo or (open_low and value == lo):
            side = "greater than" if open_low else "at least"
            raise argparse.ArgumentTypeError(f"must be {side} {lo:g} and at most {hi:g}{why}, got {text}")
        return value

    return parse


def positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


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


def add_progress_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="do not draw progress bars (for logs and CI)")


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
    p.add_argument("--data-seed", type=int, default=None,
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
