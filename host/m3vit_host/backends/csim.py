"""The ``csim`` backend: the simulated board with the HLS C-simulation as its accelerator.

``m3vit.hw.csim`` (the ctypes wrapper of the C-simulation shared library, built by ``make csim``)
lands with the HLS branch; until then opening this backend says how to get it. Written against
its API: ``CSim(cfg, mode)`` compiles or reuses the library, ``load_pack(manifest)``,
``set_task(index)``, ``run_quantized(frames) -> tokens``.

The driver, registers, DDR buffers, cache maintenance and timeout are the board path the
``simboard`` backend already exercises; here the frames and the task reach the C-simulation
through the simulated registers and DDR, and its tokens go back through DDR.
COORDINATOR: once the library also reads the weights and program from memory (as the HLS top
does over m_axi), feed it ``ddr.read(args["weights"], ...)`` / ``args["program"]`` instead of
the manifest path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from m3vit.quant.pack import Pack

from ..errors import BackendUnavailable, HostError
from ..layout import BufferLayout
from ..simboard import SimAccelerator, SimDDR
from .base import read_payload
from .device import SimBoardBackend

MISSING = "C-simulation library not available: run `make csim` (it builds the HLS C-simulation shared library)"


class CsimAccelerator:
    def __init__(self, sim, pack: Pack, manifest_path: Path):
        self.sim, self.pack = sim, pack
        self.payload = read_payload(pack, manifest_path)
        self.layout = BufferLayout.for_model(pack.cfg, pack.spec, frames=1)
        sim.load_pack(manifest_path)

    def start(self, ddr: SimDDR, args: dict[str, int]) -> bool:
        if ddr.read(args["weights"], len(self.payload)) != self.payload:
            raise HostError("the weights in device memory are not the pack the C-simulation loaded: "
                            "reopen the backend with that pack")
        lay, frames = self.layout, args["num_frames"]
        images = np.frombuffer(ddr.read(args["images"], lay.image_bytes(frames)), dtype=lay.image_dtype)
        self.sim.set_task(args["task"])
        tokens = self.sim.run_quantized(images.reshape(frames, *lay.image_shape))
        ddr.write(args["tokens"], np.asarray(tokens).astype(lay.token_dtype).tobytes())
        return True


def csim_accelerator(pack: Pack, manifest_path: Path) -> SimAccelerator:
    try:
        from m3vit.hw import csim  # the HLS branch's ctypes wrapper
    except (ImportError, OSError) as exc:
        raise BackendUnavailable(MISSING) from exc
    try:
        sim = csim.cached(pack.cfg, pack.spec.mode.name)  # compiled (g++) on first use, then reused
    except (getattr(csim, "CSimError", RuntimeError), OSError) as exc:
        raise BackendUnavailable(f"{MISSING}; building it here failed: {str(exc).splitlines()[0]}") from exc
    return CsimAccelerator(sim, pack, manifest_path)


class CsimBackend(SimBoardBackend):
    name = "csim"

    def open_board(self, pack: Pack, manifest_path: Path):
        self.accelerator = csim_accelerator(pack, manifest_path)
        return super().open_board(pack, manifest_path)
