import pytest
import torch

from m3vit.data import build_dataset
from m3vit.model import M3ViT
from m3vit.quant.quantize import QuantizedModel, calibrate


@pytest.fixture(scope="module")
def micro_model():
    from m3vit.configs import get_config

    torch.manual_seed(5)
    return M3ViT(get_config("micro")).eval()


@pytest.fixture(scope="module")
def images(micro_model):
    data = build_dataset("synthetic", "val", micro_model.cfg, length=6)
    return torch.stack([data[i]["image"] for i in range(6)]).numpy()


@pytest.fixture(scope="module")
def qmodel(micro_model, images):
    """The micro model in W8/A8 with per-tensor weight scales (one shift per op, pack version 2): the tests of the
    contract's per-op fields; W8/A8's default, per-row, is ``qrows``."""
    return QuantizedModel.build(micro_model, calibrate(micro_model, images, "w8a8", weight_scales="per-tensor"))


@pytest.fixture(scope="module")
def qrows(micro_model, images):
    """The micro model with per-row weight scales (NUMERICS.md §1): W8/A8's default."""
    return QuantizedModel.build(micro_model, calibrate(micro_model, images, "w8a8"))
