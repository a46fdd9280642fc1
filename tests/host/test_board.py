"""On the ZCU104 itself (marker ``board``, deselected by default; run on the board with ``-m board``).

Needs ``M3VIT_BITSTREAM`` (the .bit, its .hwh beside it) and ``M3VIT_PACK`` (a manifest the
bitstream was built for). The accelerator's tokens must equal the integer reference's bit for bit.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from m3vit.data import build_dataset, first_images
from m3vit_host import BackendOptions, open_runtime


@pytest.mark.board
def test_board_tokens_bit_exact_with_integer_reference():
    bitstream, pack = os.environ.get("M3VIT_BITSTREAM"), os.environ.get("M3VIT_PACK")
    if not bitstream or not pack:
        pytest.fail("set M3VIT_BITSTREAM and M3VIT_PACK to run the board test")
    options = BackendOptions(bitstream=bitstream)
    with open_runtime("pynq", pack, options=options) as board, open_runtime("reference", pack) as reference:
        images = first_images(build_dataset("synthetic", "val", board.cfg, length=8), 8)
        for task in board.tasks:
            got, want = board.run(images, task), reference.run(images, task)
            assert np.array_equal(got.tokens, want.tokens), f"{task}: board tokens differ from the integer reference"
