"""Small assets for the host tests, made once per session: a micro model, its checkpoint and W8/A8 pack (as
m3vit-quantize writes it: per-row weight scales, GPTQ rounding)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from m3vit.checkpoint import save_checkpoint
from m3vit.configs import get_config
from m3vit.data import build_dataset, first_images
from m3vit.model import M3ViT
from m3vit.provenance import sha256_file
from m3vit.quant.pack import write_pack
from m3vit.quant.quantize import QuantizedModel, calibrate, quantize_model


@dataclass
class Assets:
    model: M3ViT
    qmodel: QuantizedModel
    manifest: Path
    checkpoint: Path
    images: np.ndarray  # normalised float [6, 3, H, W], held-out scenes

    @property
    def cfg(self):
        return self.model.cfg


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> Assets:
    cfg = get_config("micro")
    torch.manual_seed(7)
    model = M3ViT(cfg).eval()
    calib = first_images(build_dataset("synthetic", "train", cfg, length=8), 8)
    qmodel = quantize_model(model, calib, "w8a8")
    root = tmp_path_factory.mktemp("host_assets")
    save_checkpoint(root / "model.pt", model)  # first: the pack records its sha256 (provenance)
    _, manifest = write_pack(qmodel, root / "pack", checkpoint_sha256=sha256_file(root / "model.pt"))
    images = first_images(build_dataset("synthetic", "val", cfg, length=6), 6)
    return Assets(model, qmodel, manifest, root / "model.pt", images)


@pytest.fixture(scope="session")
def pack_w16(assets, tmp_path_factory) -> Path:
    qmodel = QuantizedModel.build(assets.model, calibrate(assets.model, assets.images, "w16a16"))
    return write_pack(qmodel, tmp_path_factory.mktemp("pack_w16"), checkpoint_sha256=sha256_file(assets.checkpoint))[1]
