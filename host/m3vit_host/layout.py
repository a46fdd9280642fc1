"""Buffer layout the host shares with the accelerator, derived from the pack (never written by hand).

Per :data:`m3vit.hw.gen.interface.ARGS`:
- ``weights``: the pack payload exactly as stored after the ``.m3vpack`` header (bytes);
  ``weights1``, ``weights2`` (``alias_of="weights"``) get the same address: the weight ports;
- ``program``: the layer program (bytes; built from the pack by the HLS side's program builder);
- ``images``: ``[frames, C, H, W]`` integers in the contract's ``image`` format, stored in the
  smallest little-endian container of that width (the same containers the pack uses);
- ``tokens``: ``[frames, tokens, D]`` integers in the last block's ``.out`` format, same rule;
- ``scratch``: activations that do not fit on chip. Its size here is an upper bound (every frame's
  widest activation row for every token, 32-bit), until the HLS top states its own need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from m3vit.configs import ModelConfig
from m3vit.quant.fixed import QFormat
from m3vit.quant.fixed import int_dtype as container_dtype
from m3vit.quant.spec import QuantSpec

IMAGE_POINT = "image"


def token_point(cfg: ModelConfig) -> str:
    """The activation point the accelerator writes out: the last block's residual output."""
    return f"l{cfg.depth - 1}.out"


@dataclass(frozen=True)
class BufferLayout:
    frames: int
    image_shape: tuple[int, int, int]
    image_format: QFormat
    token_shape: tuple[int, int]
    token_format: QFormat
    scratch_bytes: int

    @classmethod
    def for_model(cls, cfg: ModelConfig, spec: QuantSpec, frames: int) -> BufferLayout:
        if frames < 1:
            raise ValueError(f"a device batch holds at least one frame, got {frames}")
        widest = max(3 * cfg.dim, cfg.mlp_hidden, cfg.expert_hidden, cfg.num_heads * cfg.num_tokens)
        return cls(frames=frames, image_shape=(cfg.in_chans, *cfg.img_size),
                   image_format=spec.activations[IMAGE_POINT],
                   token_shape=(cfg.num_tokens, cfg.dim), token_format=spec.activations[token_point(cfg)],
                   scratch_bytes=frames * cfg.num_tokens * widest * 4)

    @property
    def image_dtype(self) -> np.dtype:
        return container_dtype(self.image_format.bits)

    @property
    def token_dtype(self) -> np.dtype:
        return container_dtype(self.token_format.bits)

    def image_bytes(self, frames: int) -> int:
        return frames * int(np.prod(self.image_shape)) * self.image_dtype.itemsize

    def token_bytes(self, frames: int) -> int:
        return frames * int(np.prod(self.token_shape)) * self.token_dtype.itemsize
