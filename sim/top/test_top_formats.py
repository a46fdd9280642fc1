"""The layers' shared units take their formats from the program at run time: the packs of a config share one
build, and a pack whose formats the units' shifters were not built for is refused with one clear line."""

from __future__ import annotations

import pytest

PACK_DIRS = {"w8a8": "pack", "w16a16": "pack16", "w8a16": "pack_w8a16"}  # the micro vectors' packs (sim/vectors.py)


def _pack(vectors, mode: str):
    from m3vit.quant.pack import read_pack

    return read_pack(vectors.folder / PACK_DIRS[mode] / "model.json")


@pytest.mark.parametrize("mode", list(PACK_DIRS))
def test_real_packs_fit_the_built_ranges(vectors, mode):
    from m3vit.hw.gen import rtl_top_gen

    pack = _pack(vectors, mode)
    text = rtl_top_gen.layers_include(pack)  # checks every format against FORMAT_RANGES
    # the generated constants describe the config and mode only: any pack of them gives the same build
    assert text == rtl_top_gen.config_layers_include(pack.cfg, pack.spec.mode)
    assert "package" not in text and "import" not in text and "[" + str(pack.cfg.depth) + "]" not in text


def test_format_outside_the_range_is_refused(vectors, monkeypatch):
    from m3vit.hw.gen import program, rtl_top_gen

    pack = _pack(vectors, "w8a8")
    attn = [v for where, v in rtl_top_gen.pack_formats(pack)["AV_SHIFT"]]
    monkeypatch.setitem(rtl_top_gen.FORMAT_RANGES, "AV_SHIFT", (min(attn) + 1, 60))
    with pytest.raises(program.ProgramError, match=r"l\d+\.attn shift = \d+ is outside \[\d+, 60\]"):
        rtl_top_gen.layers_include(pack)
