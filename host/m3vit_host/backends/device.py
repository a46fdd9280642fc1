"""Backends that drive the accelerator through its registers: the ZCU104 (PYNQ) and the simulated board.

Both use :class:`m3vit_host.driver.AcceleratorDriver`; they differ only in where the IP and
``allocate`` come from (:meth:`DeviceBackend.open_board`).
"""

from __future__ import annotations

import os
from abc import abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from m3vit.hw.gen.program import build_program
from m3vit.quant.pack import Pack

from ..driver import AcceleratorDriver
from ..errors import BackendUnavailable, HostError
from ..hwh import IP_NAME
from ..sim_accelerators import HangingAccelerator, ReferenceAccelerator
from ..simboard import SimAccelerator, SimBoard
from .base import Backend, read_payload

DEFAULT_IP_NAME = IP_NAME  # the block design's cell (hls/scripts/build_bitstream.tcl)


def layer_program(pack: Pack, frames: int) -> bytes:
    """The layer program the accelerator's ``program`` port reads (little-endian u32 words,
    ``m3vit.hw.gen.program``)."""
    words, _ = build_program(pack, frames=frames)
    return np.asarray(words, dtype="<u4").tobytes()


def find_ip(overlay: Any, ip_name: str) -> Any:
    ip = getattr(overlay, ip_name, None)
    if ip is None:
        names = sorted(getattr(overlay, "ip_dict", {}))
        raise HostError(f"the overlay has no IP named {ip_name!r} (it has {names}): pass --ip-name")
    return ip


class DeviceBackend(Backend):
    device_frames = 4  # frames per ap_start: each weight load is shared by this many frames

    def __init__(self, timeout_s: float = 10.0, frames: int = 4, ip_name: str = DEFAULT_IP_NAME):
        super().__init__()
        self.timeout_s, self.device_frames, self.ip_name = timeout_s, frames, ip_name
        self.driver: AcceleratorDriver | None = None

    @abstractmethod
    def open_board(self, pack: Pack, manifest_path: Path) -> tuple[Any, Any, str]:
        """(IP with read/write/register_map, allocate, a name for messages)."""

    def load(self, pack: Pack, manifest_path: Path) -> None:
        super().load(pack, manifest_path)
        ip, allocate, source = self.open_board(pack, manifest_path)
        self.driver = AcceleratorDriver(ip, allocate, self.layout, self.timeout_s, source=source)
        self.driver.load(read_payload(pack, manifest_path), layer_program(pack, self.device_frames))

    def set_task(self, index: int) -> None:
        super().set_task(index)
        self.driver.set_task(index)  # one register write: nothing is reloaded

    def execute(self, prepared: np.ndarray) -> np.ndarray:
        return self.driver.run(prepared)

    def close(self) -> None:
        if self.driver is not None:
            self.driver.close()


class SimBoardBackend(DeviceBackend):
    """The board path on a simulated ZCU104 whose accelerator is the integer reference (or another)."""

    name = "simboard"

    def __init__(self, accelerator: str | SimAccelerator = "reference", **kwargs):
        super().__init__(**kwargs)
        self.accelerator = accelerator
        self.board: SimBoard | None = None

    def make_accelerator(self, pack: Pack) -> SimAccelerator:
        if not isinstance(self.accelerator, str):
            return self.accelerator
        if self.accelerator == "reference":
            return ReferenceAccelerator(pack.manifest)
        if self.accelerator == "hang":
            return HangingAccelerator()
        raise HostError(f"unknown simulated accelerator {self.accelerator!r}; choose 'reference' or 'hang'")

    def open_board(self, pack: Pack, manifest_path: Path) -> tuple[Any, Any, str]:
        self.board = SimBoard(self.make_accelerator(pack))
        return find_ip(self.board.overlay, self.ip_name), self.board.allocate, "the simulated board"


class PynqBackend(DeviceBackend):
    """The ZCU104 itself: ``pynq.Overlay`` from the ``.bit`` (its ``.hwh`` beside it) and ``pynq.allocate``."""

    name = "pynq"

    def __init__(self, bitstream: str | Path | None = None, **kwargs):
        super().__init__(**kwargs)
        self.bitstream = Path(bitstream) if bitstream else None

    def open_board(self, pack: Pack, manifest_path: Path) -> tuple[Any, Any, str]:
        bit = self.bitstream
        if bit is None:
            raise BackendUnavailable("the pynq backend needs --bitstream (the accelerator's .bit, its .hwh beside "
                                     "it; see hls/README.md); off the board use --backend simboard or reference")
        if not bit.is_file():
            raise BackendUnavailable(f"bitstream {bit} not found: build it with Vivado (see hls/README.md), copy the "
                                     f".bit and .hwh to the board and pass --bitstream")
        if not bit.with_suffix(".hwh").is_file():
            raise BackendUnavailable(f"{bit.with_suffix('.hwh')} not found: PYNQ reads the register map from the "
                                     f".hwh Vivado writes beside the .bit; copy it next to {bit.name}")
        try:
            import pynq  # the board extra; never needed to import this module
        except ImportError as exc:
            raise BackendUnavailable("PYNQ is not installed: the pynq backend runs on the ZCU104's PYNQ image "
                                     "(pip install 'm3vit-host[board]' in PYNQ's venv, see host/README.md); off "
                                     "the board use --backend simboard or reference") from exc
        if hasattr(os, "geteuid") and os.geteuid() != 0:
            raise BackendUnavailable("the pynq backend needs root (PYNQ loads the bitstream and maps the "
                                     "accelerator's registers and DDR through /dev/mem): run it as root in PYNQ's "
                                     "venv, e.g. sudo -E env PATH=\"$PATH\" m3vit-run ...")
        try:
            overlay = pynq.Overlay(str(bit))
        except PermissionError as exc:
            raise BackendUnavailable(f"PYNQ could not load {bit.name} ({exc}): run as root in PYNQ's venv") from exc
        return find_ip(overlay, self.ip_name), pynq.allocate, f"bitstream {bit.name}"
