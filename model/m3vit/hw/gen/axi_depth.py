"""Depths of the top's ``m_axi`` arguments (128-bit words), from the config's real sizes.

Vitis HLS uses an ``m_axi`` port's ``depth`` only in C/RTL co-simulation, where it is the number of words the
testbench's buffer holds and the adapter copies; ``depth=1`` (what the header had) makes a co-simulation of any
real pack invalid. Each depth here is an upper bound of what the top reads or writes for the config (the
accelerator's part of the pack; a batch of BATCH frames of images and tokens; the layer program), and the
testbench (hls/csim/tb_main.cpp) pads every buffer to its depth, so the adapter never reads past one.
"""

from __future__ import annotations

from ...configs import ModelConfig
from ...quant.spec import PrecisionMode

BEAT_BYTES = 16
PACK_ALIGN = 64  # m3vit.quant.pack.ALIGN: every tensor starts on a 64-byte boundary


def _pad16(n: int) -> int:
    return -(-n // 16) * 16


def _bytes(nbits: int) -> int:
    return next(b for b in (1, 2, 4, 8) if nbits <= 8 * b)


def pack_bytes_bound(cfg: ModelConfig, mode: PrecisionMode) -> int:
    """Bytes of a pack up to the last tensor the accelerator reads (the backbone): every matrix tiled16 in its
    weight container with its biases and a per-row shift vector, LayerNorm gains and biases, the position
    table and the class token, each tensor aligned (the task heads, read by the host, come after it)."""
    w, ew, b = _bytes(mode.weight_bits), _bytes(mode.expert_bits), _bytes(mode.bias_bits)
    r = _bytes(mode.resid_bits)
    d, k_patch = cfg.dim, cfg.in_chans * cfg.patch_size ** 2
    tensors: list[int] = [d * r, cfg.num_tokens * d * b]  # class token, position table

    def linear(n: int, k: int, wb: int, count: int = 1) -> None:
        tensors.extend([count * _pad16(n) * _pad16(k) * wb, count * n * b, count * n])  # W, bias, row shifts

    linear(d, k_patch, w)
    for layer in range(cfg.depth):
        tensors.extend([d * w, d * b, d * w, d * b])  # LN1, LN2 gain and bias
        linear(3 * d, d, w)
        linear(d, d, w)
        if cfg.is_moe(layer):
            linear(cfg.num_experts, d, w, len(cfg.tasks))
            linear(cfg.expert_hidden, d, ew, cfg.num_experts)
            linear(d, cfg.expert_hidden, ew, cfg.num_experts)
        else:
            linear(cfg.mlp_hidden, d, w)
            linear(d, cfg.mlp_hidden, w)
    return PACK_ALIGN + sum(-(-t // PACK_ALIGN) * PACK_ALIGN for t in tensors)


def arg_depths(cfg: ModelConfig, mode: PrecisionMode, batch: int, program_words: int) -> dict[str, int]:
    """Depth in 128-bit words of each ``m_axi`` argument of ``m3vit.hw.gen.interface``, by name."""
    act, resid = _bytes(mode.act_bits), _bytes(mode.resid_bits)
    weights = -(-pack_bytes_bound(cfg, mode) // BEAT_BYTES)
    image = cfg.in_chans * cfg.img_size[0] * cfg.img_size[1] * act
    return {
        "weights": weights, "weights1": weights, "weights2": weights,
        "program": -(-program_words * 4 // BEAT_BYTES),
        "images": -(-batch * image // BEAT_BYTES),
        "tokens": -(-batch * cfg.num_tokens * cfg.dim * resid // BEAT_BYTES),
        "scratch": 1,  # debug dumps only: the synthesis build never touches it
    }
