"""Generated header, top interface, standalone testbench and the vendor-tool targets."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from m3vit.configs import get_config
from m3vit.hw.gen import interface
from m3vit.hw.gen.hls_config import HlsParams, config_header, constants, pack_chunk
from m3vit.hw.gen.program import HEADER_FIELDS, LAYER_FIELDS, LAYER_POINTS, frame_dump_values, point_shapes
from m3vit.hw.run.csim import build_testbench, cached
from m3vit.hw.run.vectors import main as vectors_main
from m3vit.quant import intops
from m3vit.quant.spec import get_mode

REPO = Path(__file__).resolve().parents[2]


def _table(header: str, name: str) -> np.ndarray:
    body = re.search(rf"{name}\[\d+\] = \{{([^}}]*)\}}", header).group(1)
    return np.array([int(v) for v in body.split(",")])


def test_header_tables_and_shapes_come_from_python():
    cfg, mode = get_config("m3vit-tiny"), get_mode("w16a16")
    header = config_header(cfg, mode, HlsParams())
    assert np.array_equal(_table(header, "EXP_TABLE"), intops.EXP_TABLE)
    assert np.array_equal(_table(header, "GELU_DELTA"), intops.GELU_DELTA_TABLE)
    for name, value in constants(cfg, mode, HlsParams()).items():
        assert f"constexpr int {name} = {value};" in header
    assert "constexpr int DIM = 192;" in header and "constexpr int RESID_BITS = 24;" in header
    assert f"L_{LAYER_FIELDS[-1].upper()} = {len(LAYER_FIELDS) - 1}," in header
    assert f"H_{HEADER_FIELDS[-1].upper()} = {len(HEADER_FIELDS) - 1}," in header


def test_dump_frame_sizes_come_from_the_dump_layout():
    """The top advances each point's dump by f0 · (values per frame): that must be the layout's shape / frames."""
    cfg = get_config("m3vit-tiny")
    header = config_header(cfg, get_mode("w8a8"), HlsParams())
    per_frame = frame_dump_values(cfg)
    assert list(_table(header, "LAYER_DUMP_FRAME_VALUES")) == [per_frame[p] for p in LAYER_POINTS]
    assert f"IMAGE_DUMP_FRAME_VALUES = {per_frame['image']}u;" in header
    three = point_shapes(cfg, 3)
    for name, shape in three.items():
        assert int(np.prod(shape)) == 3 * per_frame[name.rsplit(".", 1)[-1]], name
    assert LAYER_FIELDS[-len(LAYER_POINTS):] == tuple(f"d_{p}" for p in LAYER_POINTS)  # the top's L_D_LN1 + i


def test_kernel_sources_hold_no_copied_tables():
    """The exp / GELU tables exist only in the generated header: no source repeats their entries."""
    entries = {str(v) for v in intops.EXP_TABLE[1:40]} | {str(v) for v in intops.GELU_DELTA_TABLE[5:40]}
    for src in (REPO / "hls").rglob("*"):
        if src.suffix in (".h", ".cpp"):
            numbers = set(re.findall(r"\b\d{3,}\b", src.read_text()))
            assert not numbers & entries, f"{src} repeats table entries {sorted(numbers & entries)[:5]}"


def test_top_arguments_follow_the_interface_definition():
    header = config_header(get_config("micro"), get_mode("w8a8"), HlsParams())
    args = re.search(r"#define M3V_TOP_ARGS (.*)", header).group(1).split(", ")
    assert [a.split()[-1].lstrip("*") for a in args] == [a.name for a in interface.ARGS]
    for text, arg in zip(args, interface.ARGS, strict=True):
        assert ("word_t*" in text) == (arg.kind == "mem") and ("uint32_t" in text) == (arg.kind == "scalar")
        if arg.kind == "mem":
            assert f"port={arg.name} offset=slave bundle={arg.bundle}" in header
        assert f"mode=s_axilite port={arg.name} bundle=control" in header
    top = (REPO / "hls" / "src" / "m3vit_accel.cpp").read_text()
    assert f"void {interface.TOP_FUNCTION}(M3V_TOP_ARGS)" in top and "M3V_TOP_INTERFACE_PRAGMAS" in top


def test_weight_ports_alias_the_pack_and_each_bundle_has_its_own_hp_port():
    mem = {a.name: a for a in interface.ARGS if a.kind == "mem"}
    ports = [interface.weight_port_name(p) for p in range(interface.WEIGHT_PORTS)]
    assert all(mem[n].alias_of == "weights" for n in ports[1:]) and not mem["weights"].alias_of
    assert len({mem[n].bundle for n in ports}) == interface.WEIGHT_PORTS  # one AXI master per weight port
    # The Vivado block design connects every bundle of the interface to a PS slave port of its own.
    tcl = (REPO / "hls" / "scripts" / "build_bitstream.tcl").read_text()
    pairs = [w for w in re.search(r"foreach \{bundle hp\} \{([^}]*)\}", tcl).group(1).split() if w != "\\"]
    wiring = dict(zip(pairs[::2], pairs[1::2], strict=True))
    assert set(wiring) == {a.bundle for a in mem.values()}
    assert len(set(wiring.values())) == len(wiring)


def test_pack_chunk_bound_is_tight():
    """8 products of narrow-range int8 weights by int8 activations fit the signed 18-bit low field; 9 do not."""
    chunk = pack_chunk(get_mode("w8a8"))
    assert chunk == 8 and chunk * 127 * 128 < 2**17 <= (chunk + 1) * 127 * 128
    assert pack_chunk(get_mode("w16a16")) == 0


def test_standalone_testbench_passes_and_catches_a_wrong_token(tmp_path, capfd):
    out = tmp_path / "vec"
    assert vectors_main(["--config", "micro", "--mode", "w8a8", "--frames", "1", "--out", str(out), "--run"]) == 0
    assert "PASS" in capfd.readouterr().out
    tokens = bytearray((out / "tokens.bin").read_bytes())
    tokens[2 * 70] ^= 1  # token 70's first feature (int16 containers)
    (out / "tokens.bin").write_bytes(bytes(tokens))
    tb = build_testbench(get_config("micro"), "w8a8")  # cached: the one --run used
    res = subprocess.run([str(tb), str(out)], capture_output=True, text=True)
    assert res.returncode == 1 and "first at frame 0 token 1 feature 6" in res.stdout


def test_synthesis_build_without_dumps_gives_the_same_tokens(tmp_path, capfd):
    """The top as Vitis synthesizes it (no M3V_DUMPS: no dump code in its pipelines) returns the same tokens."""
    out = tmp_path / "vec"
    assert vectors_main(["--config", "micro", "--mode", "w8a8", "--frames", "2", "--out", str(out)]) == 0
    tb = build_testbench(get_config("micro"), "w8a8", dumps=False)
    assert tb != build_testbench(get_config("micro"), "w8a8")  # a build of its own
    res = subprocess.run([str(tb), str(out)], capture_output=True, text=True)
    assert res.returncode == 0 and "PASS: 2 frame(s)" in res.stdout, res.stdout + res.stderr


def test_vendor_scripts_follow_the_board_users_flow():
    """make hls = csim + csynth + export (co-simulation only in make hls-cosim); Vitis' default clock
    uncertainty; the weights on HP0/HP1/HP3 (HP1 and HP2 share a DDR port); clocks by Auto; the bitstream only
    from the exported IP and only when the routed design meets timing."""
    hls = (REPO / "hls" / "scripts" / "run_hls.tcl").read_text()
    assert "{csim csynth export}" in hls and "set_clock_uncertainty" not in hls.replace("no set_clock_uncertainty", "")
    make = (REPO / "Makefile").read_text()
    recipe = make.split("\nbitstream:", 1)[1].split("\n\n", 1)[0]
    assert "$(MAKE) hls" not in recipe and "component.xml" in recipe
    assert re.search(r"hls-cosim:.*?--config micro.*?csynth cosim", make, re.S)
    tcl = (REPO / "hls" / "scripts" / "build_bitstream.tcl").read_text()
    pairs = [w for w in re.search(r"foreach \{bundle hp\} \{([^}]*)\}", tcl).group(1).split() if w != "\\"]
    wiring = dict(zip(pairs[::2], pairs[1::2], strict=True))
    assert sorted(wiring[f"gmem_w{p}"] for p in range(3)) == ["S_AXI_HP0_FPD", "S_AXI_HP1_FPD", "S_AXI_HP3_FPD"]
    assert "(300 MHz)" not in tcl and "Clk_master {Auto}" in tcl
    assert tcl.index("$wns < 0") < tcl.index("file copy -force $run_dir")


@pytest.mark.parametrize(("target", "tool"),
                         [("hls", "vitis_hls"), ("hls-cosim", "vitis_hls"), ("bitstream", "vivado")])
def test_vendor_targets_stop_with_one_line_without_the_tool(target, tool):
    make = shutil.which("make")
    assert make, "GNU make is needed by the project's entry points"
    path = "/usr/bin:/bin"
    assert shutil.which(tool, path=path) is None
    res = subprocess.run([make, "-s", "-C", str(REPO), target], capture_output=True, text=True, timeout=60,
                         env={"PATH": path, "HOME": "/tmp"})
    lines = (res.stdout + res.stderr).strip().splitlines()
    assert res.returncode != 0 and len(lines) == 1 and f"{tool} is not on PATH" in lines[0]


def test_libraries_of_different_configs_share_no_symbols(micro_cfg):
    """Two C-sim libraries (two configs) live in one process: none may bind its kernel buffers to the
    other's. g++ exports static locals of inline templates as process-wide unique symbols ('u' in nm)
    unless built with -fno-gnu-unique; a larger config then overflowed a smaller one's buffers."""
    lib = cached(micro_cfg, "w8a8").path
    unique = [line for line in subprocess.run(["nm", "-D", str(lib)], capture_output=True, text=True,
                                              check=True).stdout.splitlines() if " u " in line]
    assert unique == [], f"{lib.name} exports process-wide unique symbols: {unique[:3]}"
