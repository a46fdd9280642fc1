"""The RTL top generator (m3vit.hw.gen.rtl_top_gen) has a build for every precision mode: the mixed-width mode w16a16e8
gets its own layers package (8-bit expert containers beside 16-bit weights, the mixed-build flag), and the control
package carries every program version the top tells apart."""

from __future__ import annotations

import itertools
import re

import pytest
import torch

from m3vit.configs import get_config
from m3vit.data import build_dataset, first_images
from m3vit.hw.gen import program
from m3vit.hw.gen.rtl_top_gen import config_layers_include, control_include, layers_include, top_parameters
from m3vit.model import M3ViT
from m3vit.quant.pack import read_pack, write_pack
from m3vit.quant.quantize import QuantizedModel, calibrate
from m3vit.quant.spec import get_mode


def _params(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"localparam int (\w+) = (-?\d+);", text)}


@pytest.mark.parametrize("mode", ["w8a8", "w16a16", "w16a16e8", "w8a16"])
def test_layers_package_widths_per_mode(mode):
    m = get_mode(mode)
    p = _params(config_layers_include(get_config("micro"), mode))
    assert (p["L_W_BITS"], p["L_EW_BITS"]) == (m.weight_bits, m.expert_bits)
    assert (p["L_W_BYTES"], p["L_EW_BYTES"]) == ((m.weight_bits + 7) // 8, (m.expert_bits + 7) // 8)
    assert p["L_MIXED"] == (mode == "w16a16e8")


def test_linear_array_shape_is_generated_once():
    """The linear unit's rows in flight and tiles per row come from rtl_top_gen alone (one definition)."""
    from m3vit.hw.gen import rtl_top_gen

    p = _params(config_layers_include(get_config("m3vit-tiny"), "w8a8"))
    assert (p["LIN_ROWS"], p["LIN_TILES"]) == (rtl_top_gen.LIN_ROWS, rtl_top_gen.LIN_TILES)
    assert rtl_top_gen.LIN_ROWS >= 1


def test_top_parameters_of_the_mixed_mode_are_w16a16s():
    cfg = get_config("micro")
    assert top_parameters(cfg, "w16a16e8") == top_parameters(cfg, "w16a16")  # the difference is in the package


def test_control_package_has_every_program_version():
    text = control_include()
    for name, value in (("PROGRAM_VERSION", program.PROGRAM_VERSION),
                        ("PROGRAM_VERSION_PER_ROW", program.PROGRAM_VERSION_PER_ROW),
                        ("PROGRAM_VERSION_MIXED", program.PROGRAM_VERSION_MIXED)):
        assert f"localparam logic [31:0] {name} = 32'd{value};" in text


def test_layers_include_of_a_w16a16e8_pack(tmp_path):
    cfg = get_config("micro")
    torch.manual_seed(2)
    model = M3ViT(cfg).eval()
    images = first_images(build_dataset("synthetic", "val", cfg, length=2), 2)
    q = QuantizedModel.build(model, calibrate(model, images, "w16a16e8"))
    pack = read_pack(write_pack(q, tmp_path)[1])
    p = _params(layers_include(pack))
    assert (p["L_W_BITS"], p["L_EW_BITS"], p["L_EW_BYTES"], p["L_MIXED"]) == (16, 8, 1, 1)
    assert program.build_program(pack)[0][program.HEADER_FIELDS.index("version")] == program.PROGRAM_VERSION_MIXED


@pytest.mark.parametrize("name", ["micro", "m3vit-tiny"])
def test_activation_layout_holds_every_point(name):
    """The layers' on-chip activation RAMs (rtl_top_gen.activation_layout): every point the layers write has a slot
    as large as its per-frame values, on a whole 4-value word; slots of one RAM do not overlap (points share a slot
    only as ACT_RAMS lists them); the RAMs' sizes and the points' addresses reach the layers package."""
    from m3vit.hw.gen.rtl_top_gen import ACT_RAMS, activation_layout

    cfg = get_config(name)
    fv = program.frame_dump_values(cfg)
    sizes, points = activation_layout(cfg)
    written = {"embed", *program.LAYER_POINTS} - {"scores"}  # the scores stay inside the attention unit
    assert set(points) == written
    for r, (ram, (_, slots)) in enumerate(ACT_RAMS.items()):
        spans = sorted((points[s[0]][1], points[s[0]][1] + max(fv[p] for p in s)) for s in slots)
        assert spans[0][0] == 0 and spans[-1][1] == sizes[ram] and sizes[ram] % 4 == 0
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), f"{ram}: slots overlap"
        for slot in slots:
            assert {points[p] for p in slot} == {points[slot[0]]}, slot
            assert all(points[p][0] == r and points[p][1] % 4 == 0 for p in slot)
    for mode in ("w8a8", "w16a16"):
        text = config_layers_include(cfg, mode)
        p = _params(text)
        m = get_mode(mode)
        assert (p["AR_ACT_BITS"], p["AR_RES_BITS"], p["AR_INT_BITS"]) == (m.act_bits, m.resid_bits, m.internal_bits)
        assert p["AR_ACT_VALUES"] == sizes["act"] and p["AR_INT_VALUES"] == sizes["int"]
        for point, (r, base) in points.items():
            assert f"AP_{point.upper()} = {{2'd{r}, 32'd{base}}};" in text
