"""The HLS C-simulation of the mixed-width mode ``w16a16e8`` (NUMERICS.md §2): expert matrices read from the pack as
8-bit tiles beside 16-bit ones by the one weight loader, and the program version that keeps builds and packs of
different widths apart. (The whole frame, bit-exact at every point, runs in test_frame.py for every mode.)"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from m3vit.hw.gen.program import PROGRAM_VERSION_MIXED, build_program
from m3vit.hw.run.csim import cached
from m3vit.quant import intops
from m3vit.quant.pack import PackError, read_pack, write_pack
from m3vit.quant.quantize import QuantizedModel, calibrate

MODE = "w16a16e8"


@pytest.fixture(scope="module")
def sim(micro_cfg):
    return cached(micro_cfg, MODE)


def test_build_constants(sim, micro_cfg):
    assert (sim.constant("W_BYTES"), sim.constant("EW_BYTES"), sim.constant("ACT_BITS")) == (2, 1, 16)
    assert sim.constant("PACK_CHUNK") == 0  # 16-bit activations: no two-INT8-per-DSP packing
    for other in ("w8a8", "w16a16"):
        s = cached(micro_cfg, other)
        assert s.constant("EW_BYTES") == s.constant("W_BYTES")


@pytest.mark.parametrize("rows", [5, 40])
def test_loader_mixes_8_and_16_bit_ops_in_one_region(sim, rng, rows):
    """One loader streams 16-bit ops and 8-bit (expert-container) ops back to back — different tile geometry per op
    (16 or 32 beats per tile), partial blocks and k-slices — and each op gets exactly its own weights, bit-exact."""
    k_max = 200
    shapes = [(33, 200), (16, 64), (64, 9), (100, 130), (5, 200), (40, 17)]
    experts = [False, True, True, False, True, False]
    x = rng.integers(-(1 << 15), 1 << 15, (rows, k_max))
    ws = [rng.integers(-127 if e else -32767, (127 if e else 32767) + 1, (n, k))
          for (n, k), e in zip(shapes, experts, strict=True)]
    for w, e in zip(ws, experts, strict=True):  # the container's extremes are in every matrix
        w[0, 0], w[-1, -1] = (127, -127) if e else (32767, -32767)
    bs = [rng.integers(-(1 << 40), 1 << 40, n) for n, _ in shapes]
    for order in (slice(None), slice(None, None, -1)):
        outs = sim.linear_chain(x, ws[order], bs[order], experts=experts[order])
        for (n, k), w, b, y in zip(shapes[order], ws[order], bs[order], outs, strict=True):
            assert np.array_equal(y, intops.linear(x[:, :k], w, b)), f"{n}x{k}"


def test_programs_of_other_widths_are_refused(sim, micro_cfg, micro_model, micro_images, tmp_path):
    """A w16a16e8 build runs only mixed-width programs (version 4), and other builds refuse them, with one line."""
    q = QuantizedModel.build(micro_model, calibrate(micro_model, micro_images[:2], MODE))
    _, manifest = write_pack(q, tmp_path / "e8")
    e8_words, _ = build_program(read_pack(manifest))
    assert e8_words[1] == PROGRAM_VERSION_MIXED
    q16 = QuantizedModel.build(micro_model, calibrate(micro_model, micro_images[:2], "w16a16", weight_scales="per-row"))
    _, m16 = write_pack(q16, tmp_path / "w16")
    w16_words, _ = build_program(read_pack(m16))

    def load(s, words: np.ndarray) -> int:
        return s.lib.m3v_load_program(words.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)),
                                      ctypes.c_uint32(words.size))

    assert load(sim, w16_words) != 0
    assert "not a mixed-width (8-bit expert) program" in sim.lib.m3v_last_error().decode()
    w16 = cached(micro_cfg, "w16a16")
    assert load(w16, e8_words) != 0
    err = w16.lib.m3v_last_error().decode()
    assert "mixed-width mode (8-bit expert matrices), which this build does not run" in err
    assert load(sim, e8_words) == 0
    with pytest.raises(PackError, match="pack is w16a16e8, not w16a16"):
        w16.load_pack(manifest)


def test_expert_weight_bytes_halve(micro_model, micro_images, tmp_path):
    """What the mode is for: the expert stacks read from DDR are half of W16/A16's bytes; the others are equal."""
    sizes = {}
    for mode in (MODE, "w16a16"):
        q = QuantizedModel.build(micro_model, calibrate(micro_model, micro_images[:2], mode))
        sizes[mode] = {t["name"]: t["nbytes"] for t in read_pack(write_pack(q, tmp_path / mode)[1]).manifest["tensors"]}
    for name, nbytes in sizes["w16a16"].items():
        if name.endswith((".e1.w", ".e2.w")):
            assert 2 * sizes[MODE][name] == nbytes, name
        elif name.endswith((".q.w", ".gate.w", ".fc1.w", "patch.w")):
            assert sizes[MODE][name] == nbytes, name
