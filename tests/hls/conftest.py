"""Shared fixtures of the HLS C-simulation tests: one library per (config, mode), one pack per mode.

Libraries are cached under build/csim/ by a hash of their sources, so only the first run compiles.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from m3vit.configs import get_config
from m3vit.data import build_dataset
from m3vit.model import M3ViT
from m3vit.quant.pack import write_pack
from m3vit.quant.quantize import quantize_model
from m3vit.quant.spec import MODES


@pytest.fixture(scope="session")
def micro_cfg():
    return get_config("micro")


@pytest.fixture(scope="session")
def micro_model(micro_cfg):
    torch.manual_seed(5)
    return M3ViT(micro_cfg).eval()


@pytest.fixture(scope="session")
def micro_images(micro_cfg):
    data = build_dataset("synthetic", "val", micro_cfg, length=4)
    return torch.stack([data[i]["image"] for i in range(4)]).numpy()


@pytest.fixture(scope="session", params=sorted(MODES))
def micro_q(request, micro_model, micro_images, tmp_path_factory):
    """(mode, QuantizedModel, manifest path) of the micro model in each precision mode, as m3vit-quantize makes it
    (the mode's default weight scales and rounding)."""
    mode = request.param
    q = quantize_model(micro_model, micro_images, mode)
    _, manifest = write_pack(q, tmp_path_factory.mktemp(f"pack-{mode}"))
    return mode, q, manifest


@pytest.fixture
def rng():
    """Derived from the session seed that tests/conftest.py sets (and logs) before each test."""
    return np.random.default_rng(np.random.randint(0, 2**31))
