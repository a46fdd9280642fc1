"""Consumers that cannot run the mixed-width mode w16a16e8 refuse it with one line saying what to use instead."""

from __future__ import annotations

import pytest
import torch

from m3vit.configs import get_config
from m3vit.data import build_dataset, first_images
from m3vit.hw.rtl_top_gen import config_layers_include, layers_include, top_parameters
from m3vit.model import M3ViT
from m3vit.quant.pack import read_pack, write_pack
from m3vit.quant.quantize import QuantizedModel, calibrate


@pytest.mark.parametrize("make", [top_parameters, config_layers_include])
def test_rtl_top_generator_refuses_the_mode(make):
    cfg = get_config("micro")
    for mode in ("w8a8", "w16a16"):
        assert make(cfg, mode)  # the RTL's own modes still generate
    with pytest.raises(ValueError, match=r"w16a16e8 .*has no RTL top: the RTL runs w8a8 and w16a16; run w16a16e8 "
                                         r"on the HLS C-simulation"):
        make(cfg, "w16a16e8")


def test_rtl_layers_include_refuses_a_w16a16e8_pack(tmp_path):
    cfg = get_config("micro")
    torch.manual_seed(2)
    model = M3ViT(cfg).eval()
    images = first_images(build_dataset("synthetic", "val", cfg, length=2), 2)
    q = QuantizedModel.build(model, calibrate(model, images, "w16a16e8"))
    pack = read_pack(write_pack(q, tmp_path)[1])
    with pytest.raises(ValueError, match=r"mode w16a16e8 \(8-bit expert matrices beside 16-bit weights\) has no RTL "
                                         r"top: the RTL runs w8a8 and w16a16"):
        layers_include(pack)
