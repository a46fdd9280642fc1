"""The ``csim`` backend: the simulated board with the HLS C-simulation as its accelerator.

``m3vit.hw.run.csim`` compiles the accelerator's C++ into a shared library (``make csim``; built on
first use and cached under ``build/csim/``). Behind the simulated registers it reads what the
driver placed in simulated DDR — the pack payload at ``weights``, the layer program at
``program``, the frames at ``images`` — through the library's C ABI (``hls/csim/m3v_csim.h``),
runs the ``task`` register's task and writes the tokens to ``tokens``: the same bytes the HLS top
reads and writes over ``m_axi`` on the board.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from m3vit.quant.pack import Pack

from ..errors import BackendUnavailable, HostError
from ..layout import BufferLayout
from ..simboard import SimAccelerator, SimDDR
from .device import SimBoardBackend

MISSING = "C-simulation library not available: run `make csim` (it builds the HLS C-simulation shared library)"


class CsimAccelerator:
    def __init__(self, sim, pack: Pack, program_words: int):
        self.sim, self.pack, self.program_words = sim, pack, program_words
        self.layout = BufferLayout.for_model(pack.cfg, pack.spec, frames=1)
        self.loaded: tuple[bytes, bytes] | None = None  # (payload, program) the library holds
        self.runs = 0

    def _check(self, rc: int, what: str) -> None:
        if rc:
            raise HostError(f"the C-simulation refused {what}: {self.sim.lib.m3v_last_error().decode()}")

    def _load(self, ddr: SimDDR, args: dict[str, int]) -> None:
        payload = ddr.read(args["weights"], self.pack.manifest["payload_size"])
        program = ddr.read(args["program"], 4 * self.program_words)
        if self.loaded == (payload, program):
            return  # same weights and program as the last start: nothing to reload
        p = np.frombuffer(payload, dtype=np.uint8).copy()
        self._check(self.sim.lib.m3v_load_pack(p.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)),
                                               ctypes.c_uint64(p.size)), "the weights in device memory")
        w = np.frombuffer(program, dtype="<u4").copy()
        self._check(self.sim.lib.m3v_load_program(w.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)),
                                                  ctypes.c_uint32(w.size)), "the layer program in device memory")
        self.loaded = (payload, program)

    def start(self, ddr: SimDDR, args: dict[str, int]) -> bool:
        self._load(ddr, args)
        lay, frames = self.layout, args["num_frames"]
        images = np.frombuffer(ddr.read(args["images"], lay.image_bytes(frames)), dtype=lay.image_dtype)
        self.sim.set_task(args["task"])
        tokens = self.sim.run_quantized(images.reshape(frames, *lay.image_shape))
        ddr.write(args["tokens"], np.asarray(tokens).astype(lay.token_dtype).tobytes())
        self.runs += 1
        return True


def csim_accelerator(pack: Pack) -> SimAccelerator:
    try:
        from m3vit.hw.gen.program import program_words
        from m3vit.hw.run import csim
    except (ImportError, OSError) as exc:
        raise BackendUnavailable(MISSING) from exc
    try:
        sim = csim.cached(pack.cfg, pack.spec.mode.name)  # compiled (g++) on first use, then reused
    except (csim.CSimError, OSError) as exc:
        raise BackendUnavailable(f"{MISSING}; building it here failed: {str(exc).splitlines()[0]}") from exc
    return CsimAccelerator(sim, pack, program_words(pack.cfg, per_row=bool(pack.spec.row_fracs)))


class CsimBackend(SimBoardBackend):
    name = "csim"

    def open_board(self, pack: Pack, manifest_path: Path):
        self.accelerator = csim_accelerator(pack)
        return super().open_board(pack, manifest_path)
