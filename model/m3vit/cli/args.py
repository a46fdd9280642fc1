"""What every command-line tool shares and the board's lean install needs too (no PyTorch): one-line argument
errors, range-checked argument types, exit codes, and SIGTERM handled like Ctrl-C. The workstation's tools add
their own user errors in :mod:`m3vit.cli.common`.
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

T = TypeVar("T")

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


def run_with(prog: str, work: Callable[[], T], user_errors: tuple[type[BaseException], ...]) -> T | None:
    """Run a tool's work; on one of ``user_errors`` print ``prog: error: ...`` and return None.

    Ctrl-C ends the tool with exit code 130 and SIGTERM with 143, each with one line (the work has already
    left its last good state behind: outputs are only renamed into place when complete)."""
    try:
        with sigterm_as_interrupt():
            return work()
    except user_errors as exc:
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


MAX_SEED = 2**32 - 1  # numpy's and torch's generators take seeds up to this


def seed(text: str) -> int:
    """An argparse type for a random seed: an integer the generators accept (numpy's own message names no flag)."""
    return int_in(0, MAX_SEED)(text)


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


def add_progress_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="do not draw progress bars (for logs and CI)")
