"""The real board's rules in the simulated one: the IP name, the .hwh register map, PYNQ's MMIO, ap_done latency,
the CMA pool, and the pynq backend's one-line messages (not root, IP missing, buffers too big)."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from m3vit_host import BackendOptions, BackendUnavailable, HostError, RegisterMapError, open_runtime
from m3vit_host.backends.device import DEFAULT_IP_NAME, find_ip
from m3vit_host.hwh import IP_NAME, fixture_text, hwh_text
from m3vit_host.sim_accelerators import ReferenceAccelerator
from m3vit_host.simboard import CMA_BYTES, SimBoard

REPO = Path(__file__).resolve().parents[2]


def test_one_ip_name_for_block_design_driver_and_simulated_board():
    tcl = (REPO / "hls" / "scripts" / "build_bitstream.tcl").read_text()
    cell = re.search(r"create_bd_cell -type ip -vlnv \S+:m3vit_accel:\S+ (\S+)\]", tcl).group(1)
    assert cell == IP_NAME == DEFAULT_IP_NAME == "m3vit_accel"
    assert hasattr(SimBoard(accelerator=None).overlay, IP_NAME)


def test_hwh_fixture_is_what_the_generator_writes():
    """host/m3vit_host/data/m3vit.hwh is generated: `python -m m3vit_host.hwh host/m3vit_host/data/m3vit.hwh`."""
    assert fixture_text() == hwh_text()


def test_simulated_board_takes_its_register_map_from_the_hwh(assets):
    """A .hwh whose registers sit elsewhere (another interface's bitstream) is refused, so the check can fail."""
    moved = hwh_text().replace('NAME="task">\n          <PROPERTY NAME="ADDRESS_OFFSET" VALUE="0x',
                               'NAME="task">\n          <PROPERTY NAME="ADDRESS_OFFSET" VALUE="0x1')
    assert moved != hwh_text()
    board = SimBoard(ReferenceAccelerator(json.loads(assets.manifest.read_text())), hwh=moved)
    from m3vit_host.driver import AcceleratorDriver
    from m3vit_host.layout import BufferLayout

    ip = getattr(board.overlay, IP_NAME)
    layout = BufferLayout.for_model(assets.cfg, assets.qmodel.spec, frames=1)
    with pytest.raises(RegisterMapError, match=r"task at 0x1"):
        AcceleratorDriver(ip, board.allocate, layout, source="bitstream moved.bit")
    with pytest.raises(RegisterMapError, match="no module 'other'"):
        SimBoard(accelerator=None, ip_name="other", hwh=hwh_text())


@pytest.mark.parametrize("value", [np.int64(3), True, 3.0, np.uint32(3)])
def test_register_writes_follow_pynq_mmio(value):
    ip = getattr(SimBoard(accelerator=None).overlay, IP_NAME)
    with pytest.raises(ValueError, match="Data type must be int"):
        ip.write(0x10, value)
    with pytest.raises(MemoryError, match="unaligned"):
        ip.write(0x12, 3)
    ip.write(0x10, 3)
    assert ip.registers[0x10 // 4] == 3


def test_ap_done_rises_later_so_the_driver_polls(assets):
    with open_runtime("simboard", assets.manifest) as rt:
        ip = getattr(rt.backend.board.overlay, IP_NAME)
        before = ip.ctrl_reads
        rt.run(assets.images[:1], "depth")
        assert ip.starts == 1 and ip.ctrl_reads - before >= 3, "the driver must poll until ap_done (idle check, " \
                                                                "at least one busy read, then done)"


def test_cma_pool_of_the_image_size_and_buffers_that_do_not_fit(assets, monkeypatch):
    assert SimBoard(accelerator=None).ddr.cma_bytes == CMA_BYTES == 512 << 20
    from m3vit_host.backends import device


    def tiny_pool(self, pack, manifest_path):
        self.board = SimBoard(self.make_accelerator(pack), cma_bytes=256 << 10)  # 256 KiB
        return getattr(self.board.overlay, self.ip_name), self.board.allocate, "the simulated board"

    monkeypatch.setattr(device.SimBoardBackend, "open_board", tiny_pool)
    with pytest.raises(HostError, match=r"buffer \(.* MiB.*does not fit the board's contiguous memory"):
        open_runtime("simboard", assets.manifest)


def _fake_pynq(monkeypatch, board, tmp_path, euid: int) -> Path:
    fake = types.ModuleType("pynq")
    fake.Overlay = lambda path: board.overlay
    fake.allocate = board.allocate
    monkeypatch.setitem(sys.modules, "pynq", fake)
    monkeypatch.setattr("os.geteuid", lambda: euid, raising=False)
    (tmp_path / "m3vit.bit").write_bytes(b"x")
    (tmp_path / "m3vit.hwh").write_text(hwh_text())
    return tmp_path / "m3vit.bit"


def test_pynq_backend_says_when_not_root(assets, tmp_path, monkeypatch):
    bit = _fake_pynq(monkeypatch, SimBoard(accelerator=None), tmp_path, euid=1000)
    with pytest.raises(BackendUnavailable, match=r"needs root.*sudo"):
        open_runtime("pynq", assets.manifest, options=BackendOptions(bitstream=bit))


def test_pynq_backend_says_when_the_overlay_lacks_the_ip(assets, tmp_path, monkeypatch):
    board = SimBoard(accelerator=None, ip_name="other_accel_0", hwh=hwh_text(ip_name="other_accel_0"))
    bit = _fake_pynq(monkeypatch, board, tmp_path, euid=0)
    with pytest.raises(HostError, match=r"no IP named 'm3vit_accel' \(it has \['other_accel_0'\]\): pass --ip-name"):
        open_runtime("pynq", assets.manifest, options=BackendOptions(bitstream=bit))
    with pytest.raises(HostError, match="pass --ip-name"):
        find_ip(board.overlay, "nothing")
