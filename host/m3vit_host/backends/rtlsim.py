"""The ``rtlsim`` backend: the accelerator's RTL (``rtl/m3vit_top.sv``) simulated in Verilator as the accelerator.

Each ``execute`` runs the frames through ``sim/top/rtlsim.py``: the pack's top is built once (cached under
``build/sim/``, ≈50 s), then the host runtime's own driver (``m3vit_host.driver``) loads the pack payload and the
layer program into cocotbext-axi DDR, writes the task register and runs the frames as the board would — about
20 s of simulation per micro frame. It needs a source checkout (``sim/``), Verilator and cocotb
(``make setup``); every precision mode: W8/A8 and W16/A16 packs, per-tensor or (W8/A8 tested) per-row weight scales,
the mixed-width ``w16a16e8`` (its own build: 8-bit expert tiles sign-extended into the 16-bit lanes) and ``w8a16``
(its own build: 8-bit weight words into the unpacked 16-bit MAC lanes).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from m3vit.quant.pack import Pack

from ..errors import BackendUnavailable
from .base import Backend

SIM_DIR = Path(__file__).resolve().parents[3] / "sim"


def _rtlsim_module():
    for folder in (SIM_DIR, SIM_DIR / "top"):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    try:
        import rtlsim  # sim/top/rtlsim.py
    except ImportError as exc:
        raise BackendUnavailable(f"the RTL simulation needs the source checkout's sim/ folder and cocotb "
                                 f"(make setup): {exc}") from exc
    return rtlsim


class RtlSimBackend(Backend):
    name = "rtlsim"
    keeps_integers = True  # its simulation builds the RTL top for the pack's integers

    def __init__(self, device_frames: int = 2) -> None:
        super().__init__()
        self.device_frames = device_frames
        self.manifest_path: Path | None = None
        self.sim = None

    def load(self, pack: Pack, manifest_path: Path) -> None:
        super().load(pack, manifest_path)
        self.manifest_path = Path(manifest_path)
        self.sim = _rtlsim_module()
        if (reason := self.sim.missing_tool("verilator")) is not None:
            raise BackendUnavailable(f"the rtlsim backend needs Verilator: {reason} (make setup installs it)")

    def execute(self, prepared: np.ndarray) -> np.ndarray:
        try:
            return self.sim.simulate(self.pack, self.manifest_path, prepared, self.task_index, self.device_frames)
        except self.sim.RtlSimUnavailable as exc:
            raise BackendUnavailable(f"rtlsim: {exc}") from exc
