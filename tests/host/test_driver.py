"""The board path: register map check, register programming, cache maintenance, timeouts, missing PYNQ."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

from m3vit.hw.gen import interface
from m3vit_host import (
    BackendOptions,
    BackendUnavailable,
    DeviceBusy,
    DeviceTimeout,
    RegisterMapError,
    open_runtime,
)
from m3vit_host.regmap import check_register_map, expected_registers
from m3vit_host.simboard import SimBoard


def pynq_style_map(shift: dict[str, int] | None = None, drop: tuple[str, ...] = ()) -> SimpleNamespace:
    """A register map as PYNQ parses a Vitis HLS .hwh: Register objects with ``address`` and ``width``."""
    regs = {"CTRL": 0x00, "GIER": 0x04, "IP_IER": 0x08, "IP_ISR": 0x0C}
    offset = 0x10
    for name, kind in [("weights", "mem"), ("weights1", "mem"), ("weights2", "mem"), ("program", "mem"),
                       ("images", "mem"), ("tokens", "mem"), ("scratch", "mem"), ("task", "scalar"),
                       ("num_frames", "scalar")]:
        if kind == "mem":
            regs[f"{name}_1"], regs[f"{name}_2"] = offset, offset + 4
            offset += 12
        else:
            regs[name] = offset
            offset += 8
    for name, delta in (shift or {}).items():
        regs[name] += delta
    return SimpleNamespace(**{n: SimpleNamespace(address=a, width=32) for n, a in regs.items() if n not in drop})


def test_register_map_written_independently_matches_interface():
    check_register_map(pynq_style_map())  # no error
    assert expected_registers()["num_frames"] == 0x10 + 7 * 12 + 8


@pytest.mark.parametrize(("shift", "drop", "needle"), [
    ({"task": 8}, (), "task at 0x6c, expected 0x64"),
    ({"images_2": 4}, (), "images (high word)"),
    ({}, ("num_frames",), "num_frames is missing"),
])
def test_register_map_mismatch_is_a_clear_error(shift, drop, needle):
    with pytest.raises(RegisterMapError, match="rebuild the bitstream") as err:
        check_register_map(pynq_style_map(shift, drop), "bitstream old.bit")
    assert needle in str(err.value) and "old.bit" in str(err.value)


def test_register_map_accepts_dict_form_and_single_64_bit_registers():
    regs = {"CTRL": {"address_offset": 0}}
    for name, off in interface.register_map().items():
        regs[name] = {"address_offset": off}
    mem = [a.name for a in interface.ARGS if a.kind == "mem"]
    check_register_map(SimpleNamespace(**{n: SimpleNamespace(address=v["address_offset"], width=64 if n in mem
                                                             else 32) for n, v in regs.items()}))


def test_addresses_are_programmed_low_and_high_words(assets):
    with open_runtime("simboard", assets.manifest) as rt:
        ip = rt.backend.board.overlay.m3vit_accel
        for arg in interface.ARGS:
            if arg.kind == "mem":
                off = interface.register_map()[arg.name]
                address = ip.registers[off // 4] | ip.registers[off // 4 + 1] << 32
                assert address == rt.backend.driver.buffers[arg.alias_of or arg.name].device_address
                assert address >> 32, "simulated DDR sits above 4 GiB so the high word matters"


def test_simulated_buffers_need_flush_and_invalidate():
    board = SimBoard(accelerator=None)
    buf = board.allocate((4,), np.int16)
    buf[:] = [1, 2, 3, 4]
    assert board.ddr.read(buf.device_address, 8) == bytes(8)  # not flushed yet: DDR still zero
    buf.flush()
    board.ddr.write(buf.device_address, np.array([9, 9, 9, 9], np.int16).tobytes())
    assert list(buf) == [1, 2, 3, 4]  # the CPU still sees its cached copy
    buf.invalidate()
    assert list(buf) == [9, 9, 9, 9]


def test_driver_that_skips_the_flush_reads_wrong_tokens(assets, monkeypatch):
    """The simulated cache is real enough that a missing flush changes the result."""
    from m3vit_host.simboard import SimBuffer

    with open_runtime("simboard", assets.manifest) as rt:
        good = rt.run(assets.images[:1], "depth").tokens
        monkeypatch.setattr(SimBuffer, "flush", lambda self: None)
        stale = rt.run(assets.images[1:2], "depth").tokens
    assert np.array_equal(stale, good), "without a flush the accelerator re-read the previous frame"


def test_hanging_accelerator_times_out_then_reports_busy(assets):
    options = BackendOptions(accelerator="hang", timeout_s=0.05)
    with open_runtime("simboard", assets.manifest, options=options) as rt:
        with pytest.raises(DeviceTimeout, match=r"did not finish 1 frame\(s\) within 0.05 s"):
            rt.run(assets.images[:1])
        with pytest.raises(DeviceBusy, match="not idle"):
            rt.run(assets.images[:1])


def test_pynq_backend_without_bitstream(assets, tmp_path):
    with pytest.raises(BackendUnavailable, match="not found: build it with Vivado"):
        open_runtime("pynq", assets.manifest, options=BackendOptions(bitstream=tmp_path / "none.bit"))
    (tmp_path / "a.bit").write_bytes(b"x")
    with pytest.raises(BackendUnavailable, match=r"a\.hwh not found"):
        open_runtime("pynq", assets.manifest, options=BackendOptions(bitstream=tmp_path / "a.bit"))


def test_pynq_backend_without_pynq(assets, tmp_path, monkeypatch):
    (tmp_path / "a.bit").write_bytes(b"x")
    (tmp_path / "a.hwh").write_text("<xml/>")
    monkeypatch.setitem(sys.modules, "pynq", None)  # import pynq → ImportError
    with pytest.raises(BackendUnavailable, match=r"PYNQ is not installed.*\[board\]"):
        open_runtime("pynq", assets.manifest, options=BackendOptions(bitstream=tmp_path / "a.bit"))


def test_runtime_import_never_needs_pynq():
    import subprocess

    code = ("import sys; sys.modules['pynq'] = None; import m3vit_host, m3vit_host.cli; "
            "print('pynq' in sys.modules and sys.modules['pynq'] is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_pynq_backend_drives_a_pynq_shaped_module(assets, tmp_path, monkeypatch):
    """Every line of the pynq backend runs against a stand-in ``pynq`` module built on the simulated board."""
    from m3vit_host.sim_accelerators import ReferenceAccelerator

    board = SimBoard(ReferenceAccelerator(__import__("json").loads(assets.manifest.read_text())))
    fake = types.ModuleType("pynq")
    opened = []
    fake.Overlay = lambda path: opened.append(path) or board.overlay
    fake.allocate = board.allocate
    monkeypatch.setitem(sys.modules, "pynq", fake)
    monkeypatch.setattr("os.geteuid", lambda: 0, raising=False)  # PYNQ's overlays need root
    (tmp_path / "m3vit.bit").write_bytes(b"x")
    (tmp_path / "m3vit.hwh").write_text("<xml/>")
    with open_runtime("pynq", assets.manifest, options=BackendOptions(bitstream=tmp_path / "m3vit.bit")) as rt:
        result = rt.run(assets.images[:2], "normals")
    assert opened == [str(tmp_path / "m3vit.bit")]
    want, _ = assets.qmodel.tokens(assets.images[:2], "normals")
    assert np.array_equal(result.tokens, want)


def test_csim_backend_without_library_says_how_to_build_it(assets, monkeypatch):
    from m3vit.hw.run import csim

    def cannot_build(*_args, **_kwargs):  # a machine where the C-simulation library cannot be built
        raise csim.CSimError("C++ compiler 'g++' not found: install g++ (Debian: apt-get install g++)")

    monkeypatch.setattr(csim, "cached", cannot_build)
    with pytest.raises(BackendUnavailable, match="C-simulation library not available: run `make csim`"):
        open_runtime("csim", assets.manifest)


def test_csim_backend_runs_the_c_simulation_behind_the_board_registers(assets):
    """The HLS C-simulation reads the pack, program and frames the driver put in simulated DDR: bit-exact."""
    with open_runtime("csim", assets.manifest) as rt:
        for task in assets.cfg.task_names:
            result = rt.run(assets.images[:5], task)  # 4 frames per ap_start: two starts per task
            want, _ = assets.qmodel.tokens(assets.images[:5], task)
            assert np.array_equal(result.tokens, want), f"{task}: C-simulation tokens differ"
        accelerator = rt.backend.board.overlay.m3vit_accel.accelerator
        assert accelerator.runs == 2 * len(assets.cfg.task_names)
        assert len(rt.backend.driver.buffers["program"]) == 4 * accelerator.program_words


def test_csim_reads_the_weights_from_device_memory(assets):
    """Corrupting the weights in simulated DDR changes the C-simulation's tokens: it reads them from there."""
    with open_runtime("csim", assets.manifest) as rt:
        good = rt.run(assets.images[:1], "depth").tokens
        weights = rt.backend.driver.buffers["weights"]
        weights[: len(weights) // 2] = 0
        weights.flush()
        bad = rt.run(assets.images[:1], "depth").tokens
    assert not np.array_equal(good, bad)


def test_csim_build_failure_is_reported_as_unavailable(assets, monkeypatch):
    from m3vit.hw.run import csim

    def failing(cfg, mode):
        raise csim.CSimError("C++ compiler 'g++' not found: install g++")

    monkeypatch.setattr(csim, "cached", failing)
    with pytest.raises(BackendUnavailable, match=r"run `make csim`.*'g\+\+' not found"):
        open_runtime("csim", assets.manifest)
