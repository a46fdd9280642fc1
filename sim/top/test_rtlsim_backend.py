"""The host runtime's ``rtlsim`` backend: the RTL top in Verilator behind the runtime, on the micro vectors' pack
(the same build as ``test_top``): ≈65 s, marked slow."""

from __future__ import annotations

import sys

import pytest
from common import ROOT


@pytest.mark.slow
def test_rtlsim_backend_tokens_equal_the_reference(vectors):
    """open_runtime("rtlsim") runs a frame through the RTL top: its tokens are the reference backend's, bit for bit."""
    sys.path.insert(0, str(ROOT / "host"))
    from m3vit.data import build_dataset, first_images
    from m3vit_host.backends import BackendOptions
    from m3vit_host.runtime import open_runtime

    manifest = vectors.folder / "pack" / "model.json"
    task = vectors.meta["tasks"][-1]
    with open_runtime("reference", manifest) as ref:
        images = first_images(build_dataset("synthetic", "val", ref.pack.cfg, length=1), 1)
        want = ref.run(images, task).tokens
    with open_runtime("rtlsim", manifest, options=BackendOptions(device_frames=1)) as rt:
        got = rt.run(images, task).tokens
    assert got.shape == want.shape and (got == want).all(), "the RTL top's tokens differ from the reference's"
