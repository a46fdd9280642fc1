"""Accelerators behind the simulated board's registers.

- :class:`ReferenceAccelerator`: the integer reference, reading the pack payload and the frames
  from simulated DDR at the addresses in its registers and writing the tokens back there.
  Like a bitstream, it is built for one model: it knows the pack's tensor table and per-op
  constants (what the HLS top gets from its generated config and the layer program).
- :class:`HangingAccelerator`: never finishes (ap_done never rises), for timeout handling.
- The HLS C-simulation joins here as a third accelerator (see ``backends/csim.py``).
"""

from __future__ import annotations

import numpy as np

from m3vit.configs import ModelConfig
from m3vit.quant.pack import logical_tensor, stored_tensor
from m3vit.quant.spec import QuantSpec

from .backends.reference import run_integer_backbone
from .layout import BufferLayout
from .simboard import SimDDR


def decode_payload(payload: bytes, manifest: dict) -> dict[str, np.ndarray]:
    """The integer tensors of a pack payload, as the accelerator reads them (no validation: the host did that)."""
    iparams = {}
    for entry in manifest["tensors"]:
        if entry["name"].startswith("host."):
            continue  # the float heads stay on the host
        iparams[entry["name"]] = logical_tensor(stored_tensor(payload, entry), entry, dtype=None)
    return iparams


class ReferenceAccelerator:
    def __init__(self, manifest: dict):
        self.manifest = manifest
        self.cfg = ModelConfig.from_dict(manifest["config"])
        self.spec = QuantSpec.from_dict(manifest["quant"])
        self.layout = BufferLayout.for_model(self.cfg, self.spec, frames=1)
        self.runs = 0

    def start(self, ddr: SimDDR, args: dict[str, int]) -> bool:
        lay, frames = self.layout, args["num_frames"]
        iparams = decode_payload(ddr.read(args["weights"], self.manifest["payload_size"]), self.manifest)
        images = np.frombuffer(ddr.read(args["images"], lay.image_bytes(frames)), dtype=lay.image_dtype)
        images = images.reshape(frames, *lay.image_shape)
        tokens = run_integer_backbone(iparams, self.spec, self.cfg, images, args["task"], self.manifest["hardware"])
        ddr.write(args["tokens"], tokens.astype(lay.token_dtype).tobytes())
        self.runs += 1
        return True


class HangingAccelerator:
    """Accepts ap_start and never finishes."""

    def start(self, ddr: SimDDR, args: dict[str, int]) -> bool:
        return False
