"""`make hls-estimate`: resources of the HLS design as built (m3vit.hw.estimate.hls_estimate), tied to the source.

The limits test fails when the design grows past 80 % DSP48E2 / BRAM36 / URAM or 65 % LUT of the xczu7ev."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from m3vit.configs import get_config
from m3vit.hw.estimate import hls_estimate as he
from m3vit.hw.gen.hls_config import HlsParams
from m3vit.hw.platform import DEVICE
from m3vit.quant.spec import get_mode

CFG, MODE = get_config("m3vit-tiny"), get_mode("w8a8")


@pytest.fixture(scope="module")
def tiny():
    return he.estimate(CFG, MODE, HlsParams.for_mode(MODE))


def test_resources_json_has_the_issue_shape(tmp_path):
    out = tmp_path / "resources.json"
    assert he.main(["--config", "m3vit-tiny", "--mode", "w8a8", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert {"config", "mode", "kernels", "total", "device"} <= set(d)
    assert (d["config"], d["mode"]) == ("m3vit-tiny", "w8a8")
    for k in d["kernels"]:
        assert {"name", "dsp", "bram36", "uram", "lut", "basis"} <= set(k)
    for r in ("dsp", "bram36", "uram", "lut"):
        assert d["total"][r] == sum(k[r] for k in d["kernels"])
    assert d["device"]["capacity"]["dsp"] == DEVICE.dsp and d["device"]["limit"] == {
        r: DEVICE.limits()[r] for r in ("dsp", "bram36", "uram", "lut")}
    assert "estimated" in d["lut_note"]


def test_m3vit_tiny_w8a8_dsp_bram_uram_within_the_practical_limits(tiny):
    lim = DEVICE.limits()
    for r in ("dsp", "bram36", "uram"):
        assert tiny["total"][r] <= lim[r], (r, tiny["total"][r], lim[r])


def test_m3vit_tiny_w8a8_lut_within_the_practical_limit(tiny):
    """Issue 22's LUT limit (65 % of the xczu7ev, estimated: yosys figures of the RTL units and stated rules) for
    the default W8/A8 set, the parameter sweep's choice."""
    assert tiny["total"]["lut"] <= DEVICE.limits()["lut"]


def test_every_costed_multiplier_is_in_the_source():
    text = he._sources_text()
    for op in he.OPERATORS:
        assert op.site in text, f"hls/ no longer has `{op.site}` ({op.kernel}): update hls_estimate.OPERATORS"
    fabric = [op for op in he.OPERATORS if op.fabric]
    assert fabric
    for op in fabric:  # the pragma binding the product to LUTs follows its declaration
        var = re.match(r"\w+ (\w+) =", op.site).group(1)
        assert re.search(re.escape(op.site) + r"[^\n]*\n#pragma HLS BIND_OP variable = " + var
                         + r" op = mul impl = fabric", text)


def test_probe_reads_the_built_parameters_and_widths(tiny):
    c, t, p = tiny["probe"]["constants"], tiny["probe"]["types"], HlsParams.for_mode(MODE)
    assert (c["MAC_ROWS"], c["MAC_COLS"], c["ATTN_LANES"], c["AV_COLS"], c["LN_LANES"]) == (
        p.mac_rows, p.mac_cols, p.attn_lanes, p.av_cols, p.ln_lanes)
    assert (t["w_t"], t["act_t"], t["res_t"], t["int_t"], t["acc_t"]) == (
        MODE.weight_bits, MODE.act_bits, MODE.resid_bits, MODE.internal_bits, MODE.acc_bits)
    mac = next(k for k in tiny["kernels"] if k["name"] == "linear unit: MAC array")
    assert mac["dsp"] == p.mac_rows // 2 * p.mac_cols  # packed: 27x8 bits, one DSP48E2 per two MACs


def test_storage_follows_the_pragmas():
    prag = he.pragmas(he.function_body("m3vit_accel"))
    assert prag["x_res"]["BIND_STORAGE"]["impl"] == "uram" and prag["x_res"]["ARRAY_RESHAPE"]["factor"] == "LANES"
    c = {"LANES": 32}
    m = he.Memory("k", "x_res", 16, 49536)
    assert m.cost(prag and {"m3vit_accel": prag}, c)["uram"] == 8  # 1548 words of 512 bits: 8 URAM288
    # the same array partitioned into banks (the code before) costs block RAM, not URAM
    banked = he.pragmas("#pragma HLS ARRAY_PARTITION variable = x_res cyclic factor = LANES\n")
    r = m.cost({"m3vit_accel": banked}, c)
    assert r["uram"] == 0 and r["bram36"] == 32  # 32 banks of 1548 x 16 bit: 2 RAMB18 each


def test_weight_blocks_are_block_ram_words_read_from_the_code(tiny):
    """linear.h: the weight ping-pong is BLOCK_WORDS = KS_MAX·SLICE_WORDS words of WWORD_W weights (AGGREGATE, block
    RAM), a k-slice no more words than its token cycles; mac_block's shadow and active k-slice registers and the
    placer's lane and hold words are flip-flops (in the basis, no LUT); without the AGGREGATE pragma the struct's
    weights would be WWORD_W separate memories (the estimate follows the pragma)."""
    pr = he.probe(CFG, MODE, HlsParams.for_mode(MODE))
    c, t, a = pr["constants"], pr["types"], pr["arrays"]
    assert c["WWORD_W"] * t["w_t"] == c["WWORD_BITS"] == 1024
    assert c["SLICE_WORDS"] == c["MAC_ROWS"] * c["MAC_COLS"] * t["w_t"] // c["WWORD_BITS"] == 16
    assert c["SLICE_WORDS"] <= 16  # ARRAY_MIN_TOKENS: the next k-slice loads during the current one's tokens
    assert a["weight_block_t"][1] == c["BLOCK_WORDS"] == c["KS_MAX"] * c["SLICE_WORDS"]
    assert a["slice_reg_t"] == [t["w_t"], c["MAC_ROWS"] * c["MAC_COLS"]]
    prag = he.pragmas()["blocks"]
    assert prag["BIND_STORAGE"]["impl"] == "bram" and prag["BIND_STORAGE"]["type"] == "ram_s2p"
    assert prag["AGGREGATE"]["compact"] == "bit" and "ARRAY_PARTITION" not in prag
    wb = {k["name"]: k for k in tiny["kernels"]}["linear unit: weight blocks"]
    # two halves of 192 x 1,024 bit, 512 x 36 RAMB18 aspect: 29 RAMB18 each
    assert he.bram18_of(c["WWORD_BITS"], c["BLOCK_WORDS"]) == 29 and wb["bram36"] >= 29
    # shadow and active k-slices, the placer's lane and hold words, the reader's shift beats (128-bit beats)
    assert c["MAX_SHIFT_BEATS"] == c["MAC_ROWS"] // 16 + 1
    assert wb["ff"] == (2 * c["MAC_ROWS"] * c["MAC_COLS"] * t["w_t"] + 2 * c["WEIGHT_PORTS"] * c["WWORD_BITS"]
                        + c["MAX_SHIFT_BEATS"] * 128)
    assert any(b.startswith("blocks: 2 x 1 bank(s) of 192 x 1024 bit") for b in wb["basis"])
    assert wb["lut"] < 10_000  # no LUTRAM banks, no per-bank write decode
    by_prag = {m.name: m for m in he.weight_block_memories(pr, {"BIND_STORAGE": prag["BIND_STORAGE"]})}
    loose = by_prag["blocks"].cost({"array_step": {"blocks": {"BIND_STORAGE": prag["BIND_STORAGE"]}}}, c)
    assert loose["bram36"] == 2 * c["WWORD_W"] / 2  # one RAMB18 per weight and half: 128 BRAM36, not 29


def test_multiplier_and_memory_rules():
    assert he.dsp_of(27, 18) == 1 and he.dsp_of(18, 27) == 1 and he.dsp_of(8, 8) == 1
    assert he.dsp_of(32, 18) == 2 and he.dsp_of(64, 64) == 12
    assert he.bram18_of(16, 1548) == 2 and he.bram18_of(256, 516, true_dual=True) == 15
    assert he.uram_of(512, 1548) == 8 and he.uram_of(72, 4097) == 2


def test_counts_follow_the_parameters(tiny):
    p = HlsParams.for_mode(MODE)
    wider = he.estimate(CFG, MODE, dataclasses.replace(p, attn_lanes=p.attn_lanes + 2))
    av = {k["name"]: k for k in wider["kernels"]}["attention: A·V"]["dsp"] - {
        k["name"]: k for k in tiny["kernels"]}["attention: A·V"]["dsp"]
    assert av == 2 * min(p.av_cols, CFG.head_dim)  # two more lanes of A·V products (17x8: one DSP each)
    assert wider["total"]["lut"] > tiny["total"]["lut"]  # and two more lanes of fabric Q·Kᵀ products


def test_readme_table_is_the_generated_one(tiny):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "hls" / "README.md").read_text()
    assert he.markdown(tiny) in readme, "hls/README.md's as-built table is stale: paste `python -m " \
        "m3vit.hw.estimate.hls_estimate --markdown`"


def test_reshaped_words_take_each_cycles_accesses_whole(tiny):
    """The feeds' words (ARRAY_RESHAPE factor MAC_COLS) hold every aligned access of a cycle: the epilogue's
    LANES outputs, LayerNorm's LN_LANES, A·V's AV_LANE_COLS; the residual words (factor LANES) the LayerNorm
    reads: one URAM access each, not two."""
    c = tiny["probe"]["constants"]
    prag = he.pragmas(he.function_body("m3vit_accel"))
    for name in ("hid", "h_ln", "a_buf", "att_out"):
        assert prag[name]["ARRAY_RESHAPE"]["factor"] == "MAC_COLS"
    for width in (c["LANES"], c["LN_LANES"], c["AV_LANE_COLS"]):
        assert c["MAC_COLS"] % width == 0, width
    assert prag["x_res"]["ARRAY_RESHAPE"]["factor"] == "LANES" and c["LANES"] % c["LN_LANES"] == 0


def test_width_constants_are_the_tops_instances():
    """The operator widths read as namespace constants (SM_S_BITS, LN_*_BITS) are those of the template
    instances the top uses: the attention and gate softmax at the default key count, the LayerNorm at DIM."""
    text = he._sources_text()
    # the statistics' widths are their type's (SmStats<AW, N_MAX>): attention's at the default key count
    assert "typedef SmStats<INTERNAL_BITS, SM_N_MAX> SoftmaxStats;" in text
    assert "constexpr int SM_S_BITS = SmBits<SM_N_MAX>::S;" in text
    assert re.search(r"SoftmaxStats st\[ATTN_SUPER\]\)", text)  # qk_group's (m, s)
    assert "st[row] = softmax_first<INTERNAL_BITS, SM_N_MAX>(a);" in text
    assert "SmStats<LW, SM_N_MAX> st = softmax_first<LW, SM_N_MAX>(" in text  # the gate softmax
    top = he.function_body("layer_norm")
    assert "layernorm_rows<DIM>(" in top
    for name in ("D", "S1", "S2", "CENTRED", "RECIP", "NORM"):
        assert re.search(r"LN_\w+_BITS = LnBits<DIM>::" + name + r"\b", text), name


def test_shared_lanes_are_read_from_the_code(tiny):
    """The epilogue's lanes (EPI_LANES), the MoE finish's (MOE_LANES) and A·V's running sums (av_acc_t) are the built
    design's: a wider epilogue or combine costs more, and A·V keeps adders for one pass (AV_LANE_COLS columns) with
    the passes' sums in a distributed memory, not HEAD_DIM adders per lane."""
    p = HlsParams.for_mode(MODE)
    pr = he.probe(CFG, MODE, p)
    c, a = pr["constants"], pr["arrays"]
    assert (c["EPI_LANES"], c["EPI_PARTS"], c["MOE_LANES"]) == (p.epi_lanes, p.mac_rows // p.epi_lanes, p.moe_lanes)
    assert a["av_acc_t"][1] == c["ATTN_LANES"] * c["AV_LANE_COLS"]
    assert c["AV_LANE_COLS"] * c["AV_PASSES"] >= c["HEAD_DIM"]
    narrow = he.probe(CFG, MODE, dataclasses.replace(p, av_cols=c["HEAD_DIM"] // 2))  # two passes: one pass's adders
    assert narrow["arrays"]["av_acc_t"][1] == c["ATTN_LANES"] * c["HEAD_DIM"] // 2
    assert a["av_done_t"][1] == c["AV_PASSES"] * c["ATTN_LANES"] * c["AV_LANE_COLS"]
    by = {k["name"]: k for k in tiny["kernels"]}
    done_kind = "LUTRAM" if c["AV_PASSES"] > 1 else "FF (registers"  # one pass: a register per lane and column
    assert any("done:" in b and done_kind in b for b in by["attention: A·V"]["basis"])
    assert any("fin:" in b for b in by["linear unit: accumulators + epilogue"]["basis"])
    wide = {k["name"]: k for k in he.estimate(CFG, MODE, dataclasses.replace(p, epi_lanes=p.mac_rows,
                                                                            moe_lanes=p.mac_rows))["kernels"]}
    epi, wide_epi = by["linear unit: accumulators + epilogue"], wide["linear unit: accumulators + epilogue"]
    # GELU step and gate·y multipliers: one each per epilogue lane
    assert wide_epi["dsp"] == p.mac_rows // p.epi_lanes * epi["dsp"]
    assert wide_epi["lut"] > 1.8 * epi["lut"]  # every epilogue lane's requantizers, GELU, residual add
    assert wide["moe: combine accumulator"]["lut"] > 2 * by["moe: combine accumulator"]["lut"]


def test_av_out_width_is_read_from_the_code(tiny):
    """AV_OUT's normalising multipliers and requantizers are AV_OUT_W = min(av_out_cols, AV_LANE_COLS) wide, a
    pass's columns over AV_OUT_PARTS cycles: A·V's width at AV_OUT costs 2 DSP48E2 more per column and more LUTs,
    and the cycle model gives the narrower AV_OUT its extra cycles."""
    from m3vit.hw.estimate.hls_summary import frame_latency

    p = HlsParams.for_mode(MODE)
    c = tiny["probe"]["constants"]
    assert (c["AV_OUT_COLS"], c["AV_OUT_W"]) == (p.av_out_cols, min(p.av_out_cols, c["AV_LANE_COLS"]))
    assert c["AV_OUT_PARTS"] == -(-c["AV_LANE_COLS"] // c["AV_OUT_W"]) > 1
    full = dataclasses.replace(p, av_out_cols=c["AV_LANE_COLS"])
    wide = {k["name"]: k for k in he.estimate(CFG, MODE, full)["kernels"]}["attention: A·V"]
    av = {k["name"]: k for k in tiny["kernels"]}["attention: A·V"]
    assert wide["dsp"] - av["dsp"] == 2 * (c["AV_LANE_COLS"] - c["AV_OUT_W"])  # 31x18 bits: two DSP48E2 each
    assert wide["lut"] > av["lut"]
    one = dataclasses.replace(p, batch=1)
    assert frame_latency(CFG, MODE, one)["cycles_per_frame"] > frame_latency(
        CFG, MODE, dataclasses.replace(full, batch=1))["cycles_per_frame"]


def test_what_if_parameters_from_the_command_line(tmp_path, capsys):
    """`--param NAME=VALUE` estimates another set (the README's what-if figures) and prints its modelled time; a bad
    item is one line on stderr, exit 2, nothing written."""
    out = tmp_path / "resources.json"
    assert he.main(["--param", "epi_lanes=8", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["params"]["epi_lanes"] == 8 and d["probe"]["constants"]["EPI_LANES"] == 8
    assert "ms per frame at batch 1" in capsys.readouterr().out
    for bad in ("epi_lanes", "lanes=8", "epi_lanes=x", "epi_lanes=5", "mac_rows=16"):  # 5 does not divide MAC_ROWS;
        # 16 rows break a static_assert of the sources (a head row is whole QKV words)
        bad_out = tmp_path / f"bad-{len(bad)}.json"
        assert he.main(["--param", bad, "--out", str(bad_out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("hls_estimate: ") and not bad_out.exists()


def test_top_buffers_are_read_from_the_tops_declarations():
    """The top's buffers are m3vit_accel's function-scope statics: the probe sizes each from its declaration there
    (element type and count), and a buffer the top declares but the estimate does not cost is an error."""
    decl = he.top_arrays()
    assert set(decl) == set(he.TOP_ARRAYS)
    assert decl["x_res"] == ("res_t", "ROWS * DIM") and decl["hid"] == ("act_t", "ROWS * HIDDEN_MAX")
    text = he._sources_text().replace("    static int counts[EXPERTS];", "    static int counts[EXPERTS];\n"
                                      "    static int_t spare[ROWS];")
    with pytest.raises(ValueError, match="spare"):
        he.top_arrays(text)
