"""m_axi depths (m3vit.hw.gen.axi_depth): each covers what the top reads or writes, and is not far above it."""

from __future__ import annotations

import json
import re

from m3vit.configs import get_config
from m3vit.hw.gen.axi_depth import arg_depths, pack_bytes_bound
from m3vit.hw.gen.hls_config import HlsParams, config_header
from m3vit.hw.gen.program import program_words
from m3vit.quant.spec import get_mode


def test_pack_bound_covers_the_accelerators_tensors_in_every_mode(micro_q, micro_cfg):
    """The bound covers the end of the last tensor the accelerator reads (the host's task heads, "host.*",
    follow them) and is within 1.5x of it."""
    mode, _, manifest = micro_q
    tensors = json.loads(manifest.read_text())["tensors"]
    end = max(e["offset"] + e["nbytes"] for e in tensors if not e["name"].startswith("host."))
    bound = pack_bytes_bound(micro_cfg, get_mode(mode))
    assert end <= bound <= 1.5 * end, (mode, end, bound)


def test_header_carries_the_depths_in_the_pragmas():
    cfg, mode, params = get_config("m3vit-tiny"), get_mode("w8a8"), HlsParams()
    header = config_header(cfg, mode, params)
    depths = arg_depths(cfg, mode, params.batch, program_words(cfg, per_row=True))
    for name, words in depths.items():
        assert re.search(rf"port={name} offset=slave bundle=\w+ (?:\w+=\d+ )*max_widen_bitwidth=128 depth={words}\"",
                         header)
        assert f"AXI_DEPTH_{name.upper()} = {words}u;" in header
    assert "depth=1\"" in header  # only scratch (no dumps in the synthesis build)
    assert depths["weights"] * 16 > 10_000_000  # m3vit-tiny's INT8 backbone is ≈ 17 MB
