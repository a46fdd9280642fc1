"""Backends of the host runtime, by name. PYNQ and the C-simulation are imported only when opened."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import HostError
from .base import Backend
from .csim import CsimBackend
from .device import PynqBackend, SimBoardBackend
from .onnx import OnnxBackend
from .reference import ReferenceBackend
from .rtlsim import RtlSimBackend

BACKENDS: dict[str, type[Backend]] = {
    "reference": ReferenceBackend,
    "simboard": SimBoardBackend,
    "csim": CsimBackend,
    "onnx": OnnxBackend,
    "pynq": PynqBackend,
    "rtlsim": RtlSimBackend,
}


@dataclass
class BackendOptions:
    """Every backend option; each backend takes the ones it understands."""

    bitstream: str | Path | None = None  # pynq
    ip_name: str | None = None  # pynq, simboard, csim
    timeout_s: float = 10.0  # pynq, simboard, csim
    device_frames: int = 4  # pynq, simboard, csim: frames per ap_start
    onnx_dir: str | Path | None = None  # onnx
    checkpoint: str | Path | None = None  # onnx (export)
    accelerator: str = "reference"  # simboard


MAX_DEVICE_FRAMES = 1024  # frame buffers are allocated at open: beyond this, GiBs for a typo
MAX_TIMEOUT_S = 86400.0  # a day: longer is a typo (and nan or inf would wait forever)


def check_options(o: BackendOptions) -> None:
    """Numbers checked at the door, for the API as for the command line."""
    frames = o.device_frames
    if isinstance(frames, bool) or not isinstance(frames, int) or not 1 <= frames <= MAX_DEVICE_FRAMES:
        raise HostError(f"device_frames must be an integer from 1 to {MAX_DEVICE_FRAMES}, got {frames!r}")
    t = o.timeout_s
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0 < t <= MAX_TIMEOUT_S:
        raise HostError(f"timeout must be a finite number of seconds in (0, {MAX_TIMEOUT_S:g}], got {t!r}")


def make_backend(name: str, options: BackendOptions | None = None) -> Backend:
    o = options or BackendOptions()
    if not isinstance(o, BackendOptions):  # a dict of the same names gave "'dict' object has no attribute ..."
        raise HostError(f"options must be a BackendOptions (m3vit_host.BackendOptions(timeout_s=..., ...)), got "
                        f"{type(o).__name__}")
    if name not in BACKENDS:
        raise HostError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    check_options(o)
    device = {"timeout_s": o.timeout_s, "frames": o.device_frames}
    if o.ip_name:
        device["ip_name"] = o.ip_name
    if name == "reference":
        return ReferenceBackend()
    if name == "onnx":
        return OnnxBackend(onnx_dir=o.onnx_dir, checkpoint=o.checkpoint)
    if name == "pynq":
        return PynqBackend(bitstream=o.bitstream, **device)
    if name == "csim":
        return CsimBackend(**device)
    if name == "rtlsim":
        return RtlSimBackend(device_frames=o.device_frames)
    return SimBoardBackend(accelerator=o.accelerator, **device)


__all__ = ["BACKENDS", "MAX_DEVICE_FRAMES", "MAX_TIMEOUT_S", "Backend", "BackendOptions", "check_options",
           "make_backend"]
