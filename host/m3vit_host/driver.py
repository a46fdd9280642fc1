"""The accelerator driver, written once for the ZCU104 (PYNQ) and the simulated board.

It needs two things with PYNQ's API shape: an IP object (``read(offset)``, ``write(offset, value)``,
``register_map``) and ``allocate(shape, dtype)`` returning buffers that are numpy arrays with
``device_address``, ``flush()`` (write the CPU cache to DDR, before the accelerator reads) and
``invalidate()`` (drop the cache, before the CPU reads what the accelerator wrote).

One run: copy frames into the image buffer, flush, write ``num_frames``, set ap_start, poll the
control word until ap_done (clear-on-read, so it is seen exactly once) or the timeout, invalidate
the token buffer, copy the tokens out. Buffer addresses are written once after allocation; the
task is one register write (:meth:`AcceleratorDriver.set_task`), so switching task reloads nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from m3vit.hw.gen import interface

from .errors import DeviceBusy, DeviceTimeout, HostError
from .layout import BufferLayout
from .regmap import check_register_map

REGS = interface.register_map()


class AcceleratorDriver:
    def __init__(self, ip: Any, allocate: Callable[..., Any], layout: BufferLayout, timeout_s: float = 10.0,
                 poll_interval_s: float = 1e-4, source: str = "the bitstream"):
        check_register_map(ip.register_map, source)
        self.ip, self.allocate, self.layout = ip, allocate, layout
        self.timeout_s, self.poll_interval_s = timeout_s, poll_interval_s
        self.buffers: dict[str, Any] = {}
        self.task_index: int | None = None

    # Set-up ----------------------------------------------------------------------------------
    def _write_address(self, name: str, address: int) -> None:
        address = int(address)  # PYNQ's MMIO.write takes a Python int only (not numpy integers)
        self.ip.write(REGS[name], address & 0xFFFF_FFFF)
        self.ip.write(REGS[name] + 4, (address >> 32) & 0xFFFF_FFFF)

    def _allocate(self, name: str, shape: tuple[int, ...], dtype) -> Any:
        """``allocate``, with one line naming the buffer when the contiguous-memory (CMA) pool cannot hold it."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        try:
            return self.allocate(shape=shape, dtype=dtype)
        except (RuntimeError, MemoryError, OSError) as exc:
            held = sum(int(b.nbytes) for b in self.buffers.values())
            self.close()
            raise HostError(f"the accelerator's {name} buffer ({nbytes / 2**20:.1f} MiB, after {held / 2**20:.1f} MiB "
                            f"of others) does not fit the board's contiguous memory ({exc}): lower --device-frames, "
                            f"or enlarge the CMA pool (cma= on the kernel command line)") from exc

    def _bytes_buffer(self, name: str, data: bytes, minimum: int = 64) -> None:
        buf = self._allocate(name, (max(len(data), minimum),), np.uint8)
        buf[: len(data)] = np.frombuffer(data, dtype=np.uint8)
        buf.flush()
        self.buffers[name] = buf

    def load(self, weights: bytes, program: bytes) -> None:
        """Place the pack payload and the layer program in DDR and allocate the frame buffers."""
        self.close()
        lay = self.layout
        self._bytes_buffer("weights", weights)
        self._bytes_buffer("program", program)
        self.buffers["images"] = self._allocate("images", (lay.frames, *lay.image_shape), lay.image_dtype)
        self.buffers["tokens"] = self._allocate("tokens", (lay.frames, *lay.token_shape), lay.token_dtype)
        self.buffers["scratch"] = self._allocate("scratch", (lay.scratch_bytes,), np.uint8)
        for arg in interface.ARGS:
            if arg.kind == "mem":  # an alias (a second weight port) gets its buffer's address
                self._write_address(arg.name, int(self.buffers[arg.alias_of or arg.name].device_address))

    def set_task(self, index: int) -> None:
        self.ip.write(REGS["task"], int(index))
        self.task_index = int(index)

    # One run ---------------------------------------------------------------------------------
    def run(self, images: np.ndarray) -> np.ndarray:
        """Integer frames [F, C, H, W] (any F; split into device batches) → integer tokens [F, N, D]."""
        if "images" not in self.buffers:
            raise HostError("no weight pack is loaded on the accelerator: load one before running")
        if self.task_index is None:
            raise HostError("no task is selected on the accelerator: set one before running")
        out = np.empty((len(images), *self.layout.token_shape), dtype=self.layout.token_dtype)
        for start in range(0, len(images), self.layout.frames):
            chunk = images[start : start + self.layout.frames]
            out[start : start + len(chunk)] = self._run_chunk(chunk)
        return out

    def _run_chunk(self, frames: np.ndarray) -> np.ndarray:
        img, tok = self.buffers["images"], self.buffers["tokens"]
        n = len(frames)
        img[:n] = frames
        img.flush()
        self.ip.write(REGS["num_frames"], int(n))
        ctrl = self.ip.read(interface.REG_CTRL)
        if not ctrl & interface.CTRL_AP_IDLE:
            raise DeviceBusy(f"the accelerator is not idle (control word {ctrl:#x}): a previous run never "
                             f"finished; reload the bitstream (open the backend again)")
        self.ip.write(interface.REG_CTRL, interface.CTRL_AP_START)
        self._wait_done(n)
        tok.invalidate()
        return np.array(tok[:n])

    def _wait_done(self, frames: int) -> None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            if self.ip.read(interface.REG_CTRL) & interface.CTRL_AP_DONE:
                return
            if time.monotonic() > deadline:
                raise DeviceTimeout(f"the accelerator did not finish {frames} frame(s) within {self.timeout_s:g} s "
                                    f"(ap_done never set): check the bitstream matches the pack, or raise "
                                    f"--timeout for large models")
            time.sleep(self.poll_interval_s)

    def close(self) -> None:
        for buf in self.buffers.values():
            free = getattr(buf, "freebuffer", None)
            if free is not None:
                free()
        self.buffers = {}
