"""The ``csim`` backend: the simulated board with the HLS C-simulation as its accelerator.

COORDINATOR: ``m3vit.hw.csim`` (ctypes wrapper of the C-simulation shared library) lands with the
HLS branch. Wire it in :func:`csim_accelerator`: return an object whose ``start(ddr, args)`` reads
``weights``/``program``/``images`` from ``ddr`` at ``args[...]`` (sizes: ``manifest["payload_size"]``,
the program length, ``BufferLayout.image_bytes(args["num_frames"])``), calls the library for
``args["task"]`` and writes the tokens to ``args["tokens"]``, then returns True. Everything else
(driver, registers, buffers, flush/invalidate, timeout) is the board path already tested.
"""

from __future__ import annotations

from m3vit.quant.pack import Pack

from ..errors import BackendUnavailable
from ..simboard import SimAccelerator
from .device import SimBoardBackend

MISSING = "C-simulation library not available: run `make csim` (it builds the HLS C-simulation shared library)"


def csim_accelerator(pack: Pack) -> SimAccelerator:
    try:
        from m3vit.hw import csim  # noqa: F401 - present once the HLS branch lands
    except (ImportError, OSError) as exc:
        raise BackendUnavailable(MISSING) from exc
    raise BackendUnavailable("the C-simulation library is present but the host adapter is not wired yet: "
                             "see host/m3vit_host/backends/csim.py")


class CsimBackend(SimBoardBackend):
    name = "csim"

    def make_accelerator(self, pack: Pack) -> SimAccelerator:
        return csim_accelerator(pack)
