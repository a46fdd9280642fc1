"""Resources of the HLS design **as built**: ``make hls-estimate`` → ``build/hls/resources.json``.

Vitis HLS is not installed here, so this is an estimate, but one read from the code rather than from the
architecture (:mod:`m3vit.hw.estimate.resources` is the latter):

- **Numbers from the build.** ``hls/tools/probe.cpp`` is compiled by g++ against the generated ``m3vit_config.h``
  with the ap_int types Vitis synthesizes (``M3V_AP_TYPES``) and *includes the top's source*; it prints every
  constant, typedef width and on-chip array size this model uses. Nothing here retypes a width or a depth.
- **Storage from the pragmas.** ``ARRAY_PARTITION`` / ``ARRAY_RESHAPE`` / ``BIND_STORAGE`` of each on-chip array
  are parsed from ``hls/`` (factor names evaluated with the probed constants) and costed per bank: block RAM by the
  RAMB18E2 aspect ratios (16K×1 … 1K×18, 512×36 simple dual-port; true dual-port at most 18 bits), UltraRAM
  4K×72 per URAM288, LUTRAM 64 deep per LUT and bit (two for a second port), ``complete`` as registers.
- **DSP48E2 per multiplier site** (:data:`OPERATORS`): each site names the C++ text it costs (tests check it is
  in the source), its copies (the unrolled lanes, from probed constants) and its operand widths as the C++ declares
  them (probed typedef widths; an ``int64_t`` operand is 64 bits). A signed a×b multiplier takes one DSP48E2 when it
  fits 27×18, else (1 + ⌈(a−27)/26⌉)·(1 + ⌈(b−18)/17⌉) (the 26×17 unsigned partial products, both orientations
  tried). A product the code binds to fabric (``BIND_OP ... impl=fabric``) costs LUTs instead.
- **LUT.** Where the repository has a yosys run of a matching RTL unit (``rtl/README.md``'s unit table, written
  from ``make rtl-estimates``' output), its LUT per lane/unit is scaled by the HLS instances
  (basis "yosys"); everything else follows a stated rule (basis "rule") — all LUT figures are **estimated**.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from ...configs import ModelConfig
from ...quant.spec import PrecisionMode
from ..gen.hls_config import HlsParams, config_header, config_key, write_config_header
from ..platform import DEVICE

REPO = Path(__file__).resolve().parents[4]
HLS = REPO / "hls"
PROBE = HLS / "tools" / "probe.cpp"

# What the probe prints (C++ names of the built design).
PROBE_CONSTANTS = (
    "DIM", "DEPTH", "HEADS", "HEAD_DIM", "N_TOK", "N_PATCH", "PATCH_K", "EXPERTS", "TOP_K", "HIDDEN_MAX", "K_MAX",
    "W_BITS", "ACT_BITS", "RESID_BITS", "INTERNAL_BITS", "BIAS_BITS", "ACC_BITS", "LN_IN_BITS", "INV_FRAC",
    "MAC_ROWS", "MAC_COLS", "ATTN_LANES", "AV_COLS", "BATCH", "LN_LANES", "WEIGHT_PORTS", "ROWS_MAX", "KS_MAX",
    "PACK_CHUNK", "DSP_A_BITS", "DSP_P_BITS", "LANES", "ROWS", "EROWS", "QKV_WORD", "QKV_WORDS_PER_HEAD", "LN_COUNT",
    "QK_SUM_BITS", "EXP_W_BITS", "AV_SUM_BITS", "AV_LANE_COLS", "AV_PASSES", "QK_INTERLEAVE", "ATTN_SUPER",
    "SLICE_BITS", "MOE_ACC_BITS", "SM_S_BITS", "INV_BITS", "GELU_DIFF_BITS", "EPI_BITS", "EPI_IN_BITS",
    "LN_D_BITS", "LN_CENTRED_BITS", "LN_RECIP_BITS", "LN_NORM_BITS", "LN_S1_BITS", "LN_S2_BITS", "TILE", "GATE_BITS",
    "RES_SUM_BITS", "GELU_Y_BITS", "SM_RECIP_NUM_BITS", "GATE_S_BITS", "LN_ROOT_BITS", "LN_RECIP_NUM_BITS",
    "MOE_LANES", "MOE_PARTS", "EPI_LANES", "EPI_PARTS", "POST_IN_BITS", "AV_OUT_COLS", "AV_OUT_W", "AV_OUT_PARTS",
    "WWORD_BITS", "WWORD_W", "SLICE_WORDS", "BLOCK_WORDS", "TILE_WORDS", "EW_BYTES", "W_BYTES",
    "MAX_SHIFT_BEATS",
)
PROBE_TYPES = ("w_t", "act_t", "res_t", "int_t", "bias_t", "acc_t", "moe_acc_t", "gate_t", "exp_w_t", "av_sum_t",
               "dsp_a_t", "slice_t", "qk_sum_t")
# The top's own buffers (function-scope static arrays of m3vit_accel, passed down as array arguments): their element
# types and counts are read from their declarations there (top_arrays), their sizes and widths probed; this list
# names the ones the estimate costs, and a top buffer missing from it (or one gone from the top) is an error.
TOP_ARRAYS = ("x_res", "x_mid", "h_ln", "a_buf", "hid", "patches", "logits", "moe_acc", "queue", "gates", "counts",
              "att_out", "ln_g", "ln_b", "pos_buf")
_TOP_ARRAY = re.compile(r"^\s*static\s+(\w+)\s+(\w+)\[([^\]]+)\];", flags=re.M)
ARRAY_TYPES = ("head_buf_t", "weight_block_t", "acc_mem_t", "av_acc_t", "av_done_t", "slice_reg_t")


def _sources_text() -> str:
    files = [*sorted((HLS / "include").glob("*.h")), HLS / "src" / "m3vit_accel.cpp"]
    return "\n".join(f.read_text() for f in files)


def top_arrays(text: str | None = None) -> dict[str, tuple[str, str]]:
    """{name: (element type, element count expression)} of the top's static arrays, as m3vit_accel declares them
    (``static res_t x_res[ROWS * DIM];``); they must be exactly TOP_ARRAYS."""
    found = {name: (typ, count.strip()) for typ, name, count in _TOP_ARRAY.findall(function_body("m3vit_accel", text))}
    if set(found) != set(TOP_ARRAYS):
        raise ValueError(f"m3vit_accel's static arrays {sorted(found)} are not the estimate's TOP_ARRAYS "
                         f"{sorted(TOP_ARRAYS)}: cost each buffer the top declares")
    return found


def probe(cfg: ModelConfig, mode: PrecisionMode, params: HlsParams) -> dict:
    """The built design's constants, type widths and array sizes (cached beside the generated header)."""
    from ..run.csim import ap_types_dir

    key = config_key(cfg, mode, params)
    hdr_dir = write_config_header(cfg, mode, params, REPO / "build" / "hls" / key).parent
    defs = {
        "M3V_PROBE_CONSTANTS": " ".join(f"M3V_C({n})" for n in PROBE_CONSTANTS),
        "M3V_PROBE_TYPES": " ".join(f"M3V_T({n})" for n in PROBE_TYPES),
        "M3V_PROBE_ARRAYS": " ".join(f"M3V_A({n}, {typ}, ({count}))" for n, (typ, count) in top_arrays().items()),
        "M3V_PROBE_ARRAY_TYPES": " ".join(f"M3V_AT({n})" for n in ARRAY_TYPES),
    }
    digest = hashlib.sha256((config_header(cfg, mode, params) + PROBE.read_text() + _sources_text()
                             + json.dumps(defs)).encode()).hexdigest()[:16]
    cache = hdr_dir / "probe.json"
    if cache.is_file():
        got = json.loads(cache.read_text())
        if got.get("digest") == digest:
            return got
    exe = hdr_dir / "probe"
    cmd = ["g++", "-std=c++14", "-O0", "-DM3V_AP_TYPES", "-isystem", str(ap_types_dir()), "-I", str(hdr_dir),
           "-I", str(HLS / "include"), *(f"-D{k}={v}" for k, v in defs.items()), str(PROBE), "-o", str(exe)]
    built = subprocess.run(cmd, capture_output=True, text=True)
    if built.returncode:  # a parameter set the sources reject (a static_assert names the rule it breaks)
        errors = [ln for ln in built.stderr.splitlines() if "error:" in ln]
        why = errors[0].split("error:", 1)[1].strip() if errors else built.stderr.strip()[-300:]
        raise ValueError(f"{params} does not compile: {why}")
    out = json.loads(subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout)
    out["digest"] = digest
    cache.write_text(json.dumps(out, indent=1))
    return out


# --- pragmas -----------------------------------------------------------------------------------------------------
_PRAGMA = re.compile(r"(?:#pragma\s+HLS|M3V_PRAGMA\(HLS)\s+"
                     r"(ARRAY_PARTITION|ARRAY_RESHAPE|BIND_STORAGE|BIND_OP|AGGREGATE)\b([^\n)]*)")


def pragmas(text: str | None = None) -> dict[str, dict[str, dict[str, str]]]:
    """{variable: {pragma: {option: value}}} of the storage pragmas in hls/ (the block stream's macro included:
    its ``var`` stands for every variable it is applied to). Two ARRAY_PARTITIONs of one variable (dims) merge as
    ``dim<N>`` entries."""
    text = _sources_text() if text is None else text
    # the block stream's pragmas come from a macro: its `var` stands for each variable it is applied to
    macro = re.search(r"#define M3V_BLOCK_STREAM_PRAGMAS\(var\)((?:[^\n]*\\\n)*[^\n]*)", text)
    if macro:
        body = macro.group(1)
        for var in re.findall(r"^\s*M3V_BLOCK_STREAM_PRAGMAS\((\w+)\)", text, flags=re.M):
            text += "\n" + body.replace("variable = var ", f"variable = {var} ")
    out: dict[str, dict[str, dict[str, str]]] = {}
    for kind, rest in _PRAGMA.findall(text):
        opts = dict(re.findall(r"(\w+)\s*=\s*(\w+)", rest))
        var = opts.get("variable")
        if not var:
            continue
        slot = out.setdefault(var, {})
        if kind == "ARRAY_PARTITION" and kind in slot:
            slot.setdefault("dims", {})[opts.get("dim", "1")] = opts.get("type", "complete")
        elif kind == "ARRAY_PARTITION":
            slot[kind] = opts
            slot["dims"] = {opts.get("dim", "1"): opts.get("type", "complete")}
        else:
            slot[kind] = opts
    return out


def function_body(name: str, text: str | None = None) -> str:
    """The text of C++ function `name` in hls/ (its signature to the closing brace at column 0): local arrays'
    pragmas are read from their own function (several functions have a local `acc` or `xs`)."""
    text = _sources_text() if text is None else text
    m = re.search(r"\n(?:template <[^\n]*>\n)?(?:inline )?void " + name + r"\([^{;]*\{(.*?)\n\}\n", text, flags=re.S)
    if m is None:
        raise ValueError(f"hls/: no function {name}")
    return m.group(1)


def _val(x: str, c: dict[str, int]) -> int:
    return int(x) if x.isdigit() else int(c[x])


# --- memory cost rules ---------------------------------------------------------------------------------------------
BRAM18_SDP = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
BRAM18_TDP = BRAM18_SDP[:-1]  # true dual-port: at most 18 bits per port


def bram18_of(width: int, depth: int, true_dual: bool = False) -> int:
    """RAMB18E2 halves of one memory of `depth` words × `width` bits (the best aspect ratio)."""
    if width <= 0 or depth <= 0:
        return 0
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in (BRAM18_TDP if true_dual else BRAM18_SDP))


def uram_of(width: int, depth: int) -> int:
    return math.ceil(width / 72) * math.ceil(depth / 4096)


def lutram_of(width: int, depth: int, ports: int = 1) -> int:
    """LUTs of a distributed RAM: one LUT per bit per 64 words (RAM64X1S), twice for a second read port."""
    return width * math.ceil(depth / 64) * (2 if ports > 1 else 1)


AUTO_LUTRAM_BITS = 1024  # a bank this small Vitis leaves in distributed RAM / registers, not a BRAM (rule)


@dataclass
class Memory:
    kernel: str
    name: str
    width: int   # bits of one element
    elems: int   # elements of one copy
    copies: int = 1  # ping-pong halves / PIPO
    note: str = ""
    scope: str = "m3vit_accel"  # the function that declares it (and holds its pragmas)

    def cost(self, prag: dict, c: dict[str, int]) -> dict:
        p = prag.get(self.scope, {}).get(self.name, {})
        banks, word, impl, true_dual = 1, self.width, "auto", False
        part, reshape, bind = p.get("ARRAY_PARTITION"), p.get("ARRAY_RESHAPE"), p.get("BIND_STORAGE")
        how = []
        if reshape:
            f = _val(reshape.get("factor", "1"), c)
            word *= f
            how.append(f"reshape {reshape.get('type', 'cyclic')} {f} → {word}-bit words")
        depth = math.ceil(self.elems / (word // self.width))
        if part:
            dims = p.get("dims", {})
            if all(t == "complete" for t in dims.values()) and "factor" not in part:
                banks = self._complete_banks(dims, c)
                depth = math.ceil(depth / banks)
                how.append(f"complete partition ({banks} banks)")
            else:
                banks = _val(part.get("factor", "1"), c)
                depth = math.ceil(depth / banks)
                how.append(f"partition {part.get('type', 'cyclic')} {banks}")
        if bind:
            impl = bind.get("impl", "auto")
            true_dual = bind.get("type", "") == "ram_t2p"
            how.append(f"BIND_STORAGE {bind.get('type')} impl={impl}")
        n = self.copies
        res = {"bram36": 0.0, "uram": 0, "lut": 0, "ff": 0}
        if impl == "uram":
            res["uram"] = n * banks * uram_of(word, depth)
        elif impl == "lutram" or (impl == "auto" and word * depth <= AUTO_LUTRAM_BITS):
            if depth <= 1:
                res["ff"] = n * banks * word
            else:
                res["lut"] = n * banks * lutram_of(word, depth, 2 if true_dual else 1)
        else:  # bram, or Vitis' default for a bank above AUTO_LUTRAM_BITS
            res["bram36"] = n * banks * bram18_of(word, depth, true_dual) / 2
        res["how"] = ", ".join(how) or "no pragma"
        res["bank"] = f"{n} x {banks} bank(s) of {depth} x {word} bit"
        return res

    def _complete_banks(self, dims: dict[str, str], c: dict[str, int]) -> int:
        shape = MEMORY_SHAPES.get(self.name)
        if shape is None:
            return self.elems
        n = 1
        for d in dims:
            n *= shape(c)[int(d) - 1]
        return n


# Shapes of the multi-dimensional arrays whose partitions name a dim (from their declarations).
MEMORY_SHAPES = {
    "acc": lambda c: (c["ROWS_MAX"], c["MAC_ROWS"]),                 # acc_mem_t
    "fin": lambda c: (c["ROWS_MAX"], c["MAC_ROWS"]),                 # acc_mem_t: finished rows → epilogue
    "sc": lambda c: (c["ATTN_SUPER"], c["N_TOK"]),                   # attention score rows
    "done": lambda c: (c["AV_PASSES"], c["ATTN_LANES"], c["AV_LANE_COLS"]),  # av_done_t: A·V's final pass sums
}


def weight_block_memories(pr: dict, prag_blocks: dict) -> list[Memory]:
    """The weight ping-pong (linear.h weight_block_t: BLOCK_WORDS words of WWORD_W weights, a struct) and the
    registers around it. AGGREGATE on the stream makes each word one WWORD_W·w_t-bit block RAM word; without it
    Vitis disaggregates the struct into WWORD_W memories of one weight each (what this costs then)."""
    c, t, a = pr["constants"], pr["types"], pr["arrays"]
    n_words = a["weight_block_t"][1]
    if n_words != c["BLOCK_WORDS"]:
        raise ValueError(f"weight_block_t has {n_words} elements, not BLOCK_WORDS = {c['BLOCK_WORDS']} words")
    word = c["WWORD_W"] * t["w_t"]
    if "AGGREGATE" in prag_blocks:
        blocks = Memory("linear unit: weight blocks", "blocks", word, n_words, 2,
                        f"stream_of_blocks<weight_block_t, 2>: {c['SLICE_WORDS']} words per k-slice (AGGREGATE)",
                        "array_step")
    else:
        blocks = Memory("linear unit: weight blocks", "blocks", t["w_t"], n_words, 2 * c["WWORD_W"],
                        "stream_of_blocks<weight_block_t, 2>, the word's struct disaggregated (no AGGREGATE)",
                        "array_step")
    sr_w, sr_n = a["slice_reg_t"]
    return [
        blocks,
        Memory("linear unit: weight blocks", "shadow", sr_w, sr_n, 1,
               "the next k-slice, loaded word by word from the block RAM (registers)", "mac_block"),
        Memory("linear unit: weight blocks", "active", sr_w, sr_n, 1,
               "the k-slice the MACs read (registers)", "mac_block"),
        Memory("linear unit: weight blocks", "lane", word, c["WEIGHT_PORTS"], 1,
               "the placer's word per weight port in the making (registers)", "block_placer"),
        Memory("linear unit: weight blocks", "hold", word, c["WEIGHT_PORTS"], 1,
               "the placer's finished words, written one per cycle (registers)", "block_placer"),
        Memory("linear unit: weight blocks", "sw", 128, c["MAX_SHIFT_BEATS"], 1,
               "the reader's shift beats of a block, read in a burst before its biases (registers)", "weight_reader"),
    ]


def memories(pr: dict, prag_blocks: dict | None = None) -> list[Memory]:
    """Every on-chip memory of the top; ``prag_blocks``: the weight block stream's pragmas (default: hls/'s)."""
    if prag_blocks is None:
        prag_blocks = pragmas().get("blocks", {})
    c, t, a = pr["constants"], pr["types"], pr["arrays"]
    top = {
        "x_res": "activations: residual stream", "x_mid": "activations: residual stream",
        "h_ln": "activations: array feeds", "a_buf": "activations: array feeds", "hid": "activations: array feeds",
        "patches": "activations: array feeds", "att_out": "attention: output copy",
        "logits": "moe: router, top-k, queues", "queue": "moe: router, top-k, queues",
        "gates": "moe: router, top-k, queues", "counts": "moe: router, top-k, queues",
        "moe_acc": "moe: combine accumulator", "ln_g": "layernorm", "ln_b": "layernorm",
        "pos_buf": "activations: position table",
    }
    out = [Memory(top[n], n, *a[n]) for n in TOP_ARRAYS]
    if c["EPI_PARTS"] > 1:  # linear.h: the finished rows wait for the epilogue (EPI_PARTS = 1: inline, fin unused)
        out.append(Memory("linear unit: accumulators + epilogue", "fin", *a["acc_mem_t"], 1,
                          "a block's finished rows, read by the epilogue beside the next block", "array_engine"))
    hb_w, hb_n = a["head_buf_t"]
    out += weight_block_memories(pr, prag_blocks)
    out += [
        Memory("linear unit: accumulators + epilogue", "acc", *a["acc_mem_t"], scope="array_engine"),
        Memory("attention: head Q, K, V", "qh", hb_w, hb_n, 2, "PIPO between heads", "attention_heads"),
        Memory("attention: head Q, K, V", "kh", hb_w, hb_n, 2, "PIPO between heads", "attention_heads"),
        Memory("attention: head Q, K, V", "vh", hb_w, hb_n, 2, "PIPO between heads", "attention_heads"),
        Memory("attention: head Q, K, V", "qkv", c["QKV_WORD"] * c["ACT_BITS"], c["QKV_WORDS_PER_HEAD"], 1,
               "FIFO array → attention unit, one head deep (STREAM depth)", "array_step"),
        Memory("attention: Q·Kᵀ + online softmax", "sc", t["int_t"], c["ATTN_SUPER"] * c["N_TOK"], 2,
               "score rows of a row group, PIPO between the group's stages", "attention_head"),
        Memory("attention: A·V", "done", *a["av_done_t"], 1,
               "every pass's final sums until AV_OUT (av_done_t)", "av_subgroup"),
        Memory("layernorm", "xs", c["LN_LANES"] * c["LN_IN_BITS"], 2 * c["DIM"] // c["LN_LANES"] + 128, 1,
               "ln_stats → ln_norm FIFO (STREAM depth)", "layernorm_rows"),
        Memory("linear unit: weight blocks", "beats", c["WEIGHT_PORTS"] * 128, 64, 1,
               "reader → placer FIFO (STREAM depth 64)", "weight_loader"),
    ]
    return out


# --- multipliers -------------------------------------------------------------------------------------------------
def dsp_of(a: int, b: int) -> int:
    """DSP48E2 of a signed a×b-bit multiplier (27×18 per DSP; larger ones from 26×17 partial products)."""

    def parts(x: int, y: int) -> int:
        return (1 + max(0, math.ceil((x - 27) / 26))) * (1 + max(0, math.ceil((y - 18) / 17)))

    return min(parts(a, b), parts(b, a))


def fabric_mul_lut(a: int, b: int) -> int:
    """LUTs of an a×b multiplier in fabric (rule: one LUT6 per partial-product bit pair, a·b / 2, plus the
    a + b bit final adder)."""
    return a * b // 2 + a + b


@dataclass(frozen=True)
class Operator:
    kernel: str
    site: str              # C++ text of the multiplication (must be in hls/; tests check)
    copies: object         # (constants) -> instances in the built design
    widths: object         # (constants, types) -> (a bits, b bits) as the C++ declares the operands
    fabric: bool = False   # BIND_OP impl=fabric on it
    note: str = ""


OPERATORS = (
    Operator("linear unit: MAC array", "mul_exact<DSP_A_BITS, ACT_BITS>(packed, xs[c0 + j])",
             lambda c: c["MAC_ROWS"] // 2 * c["MAC_COLS"] if c["PACK_CHUNK"] else 0,
             lambda c, t: (t["dsp_a_t"], t["act_t"]), note="two packed weights × one activation (WP486)"),
    Operator("linear unit: MAC array", "mul_exact<W_BITS, ACT_BITS>(w[n][c], xs[c])",
             lambda c: 0 if c["PACK_CHUNK"] else c["MAC_ROWS"] * c["MAC_COLS"],
             lambda c, t: (t["w_t"], t["act_t"]), note="unpacked MACs (modes without packing)"),
    Operator("attention: Q·Kᵀ + online softmax", "qk_prod_t prod = qr[row][c] * kj[c]",
             lambda c: c["ATTN_LANES"] * c["HEAD_DIM"], lambda c, t: (t["act_t"], t["act_t"]), fabric=True,
             note="one a×a product per lane and head feature, BIND_OP impl=fabric"),
    Operator("attention: Q·Kᵀ + online softmax", "mul_exact<SB, EXP_W_BITS>(st.s, e)",
             lambda c: c["ATTN_LANES"] + 1, lambda c, t: (c["SM_S_BITS"], c["EXP_W_BITS"]),
             note="online-softmax rescale s·2^(m−a): one per lane, one in the router's gate softmax"),
    Operator("attention: A·V", "av_sum_t(e * vj[c])", lambda c: c["ATTN_LANES"] * c["AV_LANE_COLS"],
             lambda c, t: (t["exp_w_t"], t["act_t"]), note="P lanes × AV_LANE_COLS value columns"),
    Operator("attention: A·V", "mul_exact<AV_SUM_BITS, INV_BITS>(done[out_pass][l][jj], inv[l])",
             lambda c: c["AV_OUT_W"],
             lambda c, t: (t["av_sum_t"], c["INV_BITS"]), note="AV_OUT: Σ·(1/s), AV_OUT_W columns per cycle"),
    Operator("linear unit: accumulators + epilogue",
             "mul_exact<GELU_DIFF_BITS, GELU_REM_BITS>(sint<GELU_DIFF_BITS>(t1 - t0)",
             lambda c: c["EPI_LANES"], lambda c, t: (c["GELU_DIFF_BITS"], c["INTERNAL_BITS"] + 1),
             note="GELU interpolation, one per epilogue lane"),
    Operator("linear unit: accumulators + epilogue", "mul_exact<GATE_BITS, RESID_BITS>(gp, v)",
             lambda c: c["EPI_LANES"], lambda c, t: (t["gate_t"], t["res_t"]),
             note="MoE combine gate·y, one per epilogue lane"),
    Operator("layernorm", "mul_exact<LN_IN_BITS, LN_IN_BITS>(beat.v[l], beat.v[l])", lambda c: c["LN_LANES"],
             lambda c, t: (c["LN_IN_BITS"], c["LN_IN_BITS"]), note="Σx² per lane"),
    Operator("layernorm", "mul_exact<B::D, LN_IN_BITS>(sint<B::D>(d), beat.v[l])", lambda c: c["LN_LANES"],
             lambda c, t: (c["LN_D_BITS"], c["LN_IN_BITS"]), note="D·x per lane"),
    Operator("layernorm", "mul_exact<B::CENTRED, B::RECIP>(centred, sc.recip)", lambda c: c["LN_LANES"],
             lambda c, t: (c["LN_CENTRED_BITS"], c["LN_RECIP_BITS"]), note="(D·x − s1)·recip per lane"),
    Operator("layernorm", "mul_exact<B::NORM, G>(norm, sint<G>(gain[i]))", lambda c: c["LN_LANES"],
             lambda c, t: (c["LN_NORM_BITS"], t["w_t"]), note="·gain per lane"),
    Operator("layernorm", "mul_exact<B::D, B::S2>(sint<B::D>(d), s.s2)", lambda c: 1,
             lambda c, t: (c["LN_D_BITS"], c["LN_S2_BITS"]), note="D·s2 per row"),
    Operator("layernorm", "mul_exact<B::S1, B::S1>(s.s1, s.s1)", lambda c: 1,
             lambda c, t: (c["LN_S1_BITS"], c["LN_S1_BITS"]), note="s1² per row"),
    Operator("moe: router, top-k, queues", "mul_exact<EXP_W_BITS, INV_BITS>(x, inv)", lambda c: 1,
             lambda c, t: (c["EXP_W_BITS"], c["INV_BITS"]), note="gate = 2^(l−m)·(1/s)"),
)


# --- LUT per kernel ----------------------------------------------------------------------------------------------
def rtl_units() -> dict[str, dict]:
    """yosys figures of the RTL units: the committed table of rtl/README.md ("The units", ``make rtl-estimates``'
    output). Not build/rtl/estimates.json: what a local run left there (other parameters, an older unit) would make
    the estimate depend on the machine's build folder."""
    units: dict[str, dict] = {}
    text = (REPO / "rtl" / "README.md").read_text()
    # unit | parameters | LUT | LUTRAM | FF | CARRY | DSP48E2 | BRAM36 [| further figures]
    row = r"^\| (\w+) \| ([A-Z_]+=[^|]*) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| ([\d.]+) \|(?: [\d.]+ \|)*$"
    for m in re.finditer(row, text, flags=re.M):
        units[m.group(1)] = {"LUT": int(m.group(3)), "DSP48E2": int(m.group(7)),
                             "parameters": dict(kv.split("=") for kv in m.group(2).replace(" ", "").split(",")),
                             "source": "rtl/README.md units table (make rtl-estimates)"}
    return units


def shifter_lut(bits: int) -> int:
    """A `bits`-wide run-time shifter: ⌈log2 bits⌉ levels of 2:1 muxes, two levels per LUT6 (rule)."""
    return bits * math.ceil(math.ceil(math.log2(bits)) / 2)


def divider_lut(num_bits: int, den_bits: int) -> int:
    """A pipelined restoring divider of a num_bits dividend by a den_bits divisor: one stage per dividend bit (the
    quotient as wide as the dividend, as HLS sizes it), each a den_bits subtract-and-select, 2 LUT per bit (rule)."""
    return 2 * num_bits * den_bits


def recip_divider(c: dict, num: str, den: str) -> tuple[int, str]:
    """fx.h div_round_pos<Q, N, D>: an (N + 1)-bit dividend (2·num + den) by a D-bit divisor (2·den)."""
    n, d = c[num] + 1, c[den]
    return divider_lut(n, d), f"{n}/{d}-bit divider ({num} + 1 / {den}: div_round_pos, {divider_lut(n, d)}, rule)"


def requant_lut(units: dict, in_bits: int) -> tuple[int, str]:
    """One requantizer (round half up at a run-time shift, saturate) of an in_bits value: yosys' requant_rt
    (IN_W=32) scaled by width."""
    u = units["requant_rt"]
    w = int(u["parameters"]["IN_W"])
    return round(u["LUT"] * (in_bits + 1) / (w + 1)), f"requant_rt {u['LUT']} LUT at IN_W={w}, × (in+1)/{w + 1}"


def lut_terms(pr: dict, units: dict) -> list[tuple[str, int, str, str]]:
    """(kernel, LUT, basis, rule) of the logic (memories and multipliers are added by :func:`estimate`)."""
    c = pr["constants"]
    out = []
    mt = units["mac_tile"]
    macs_per_tile = int(mt["parameters"]["N_OUT"]) * int(mt["parameters"]["K_GROUP"])
    macs = c["MAC_ROWS"] * c["MAC_COLS"]
    out.append(("linear unit: MAC array", round(mt["LUT"] * macs / macs_per_tile), "yosys",
                f"mac_tile {mt['LUT']} LUT per {macs_per_tile} MACs × {macs} MACs"))
    # linear.h block_placer: the held words go to the block RAM one per cycle (a WEIGHT_PORTS-to-1 select per word
    # bit, 4:1 per LUT6), each beat's weights past k_in zeroed (one LUT per beat bit and port); a mode whose expert
    # container differs (EW_BYTES < W_BYTES) loads a lane register bit from one of two beat positions (2:1). The
    # lane, hold, shadow and active registers load at fixed positions under clock enables (no data mux, FFs: the
    # memories' basis); mac_block's word-enable decode of SLICE_WORDS is a few LUTs.
    w_sel = c["WWORD_BITS"] * math.ceil(c["WEIGHT_PORTS"] / 4)
    mask = c["WEIGHT_PORTS"] * 128
    mixed = c["WEIGHT_PORTS"] * c["WWORD_BITS"] if c["EW_BYTES"] != c["W_BYTES"] else 0
    # linear.h weight_reader: its burst loops each write the beats FIFO (a select of the loops' sources per port
    # and beat bit: tile groups, last group, biases / shift registers, zero — 4:1, one LUT6) and the bias loop and
    # the shifts-left loop read the block's MAX_SHIFT_BEATS shift beats from registers (a MAX_SHIFT_BEATS + 1 : 1
    # select per beat bit and loop, 4:1 per LUT6)
    fifo_sel = c["WEIGHT_PORTS"] * 128
    sh_sel = 2 * 128 * math.ceil((c["MAX_SHIFT_BEATS"] + 1) / 4)
    out.append(("linear unit: weight blocks", w_sel + mask + mixed + fifo_sel + sh_sel + 6 * 1024, "rule",
                f"placer: the word write select ({c['WEIGHT_PORTS']}:1 × {c['WWORD_BITS']} bit = {w_sel}), the "
                f"k_in mask ({c['WEIGHT_PORTS']} × 128 = {mask})"
                + (f", the two containers' 2:1 lane select ({mixed})" if mixed else "")
                + f"; reader: the burst loops' FIFO write select ({c['WEIGHT_PORTS']} × 128 = {fifo_sel}), the "
                f"shift registers' select (2 × 128 × {math.ceil((c['MAX_SHIFT_BEATS'] + 1) / 4)} = {sh_sel}); "
                "reader/placer address logic 6k"))
    rq, rq_rule = requant_lut(units, c["EPI_IN_BITS"])
    rs = c["RES_SUM_BITS"]  # the residual add's aligned operands and sum (fx.h residual_add)
    r_add, _ = requant_lut(units, rs)
    # the second requantizer, shared by GELU's y and the residual sum (the epilogue's POST_IN_BITS), after a 2:1
    # select of its input (1 LUT per bit)
    r_post, _ = requant_lut(units, c["POST_IN_BITS"])
    g = units["gelu"]
    g_lanes = int(g["parameters"]["LANES"])
    per_lane = (rq + 2 * shifter_lut(rs) + round(g["LUT"] / g_lanes) + r_post + c["POST_IN_BITS"]
                + c["BIAS_BITS"] + 1)
    # linear.h: EPI_LANES lanes take a token's MAC_ROWS outputs over EPI_PARTS cycles, each lane picking its
    # output's accumulator and per-row shift of the part (an EPI_PARTS-to-1 select, 4:1 per LUT6, rule)
    sel = (c["ACC_BITS"] + 8) * math.ceil(c["EPI_PARTS"] / 4) if c["EPI_PARTS"] > 1 else 0
    out.append(("linear unit: accumulators + epilogue", c["EPI_LANES"] * (per_lane + sel), "yosys+rule",
                f"per epilogue lane (EPI_LANES={c['EPI_LANES']}, a token's {c['MAC_ROWS']} outputs over "
                f"EPI_PARTS={c['EPI_PARTS']} cycles): the part's accumulator and shift select ({sel}), "
                f"one requantizer shared by every kind, the embedding's included "
                f"(EPI_IN_BITS={c['EPI_IN_BITS']}: {rq}, {rq_rule}) after its position adder ({c['BIAS_BITS'] + 1}), "
                f"the residual add's two RES_SUM_BITS={rs} shifts ({shifter_lut(rs)} each, rule), GELU "
                f"({round(g['LUT'] / g_lanes)}: yosys gelu per lane), and ONE second requantizer for GELU's y and the "
                f"residual sum (POST_IN_BITS={c['POST_IN_BITS']}: {r_post}, after a {c['POST_IN_BITS']}-LUT select)"))
    qk_adders = c["ATTN_LANES"] * (c["HEAD_DIM"] - 1) * c["QK_SUM_BITS"]
    rq_int, _ = requant_lut(units, c["QK_SUM_BITS"])
    e2 = 345  # per exp2_neg copy: yosys m3vit-tiny top by_unit, 10,692 LUT / 31 copies (rtl/README.md)
    # the running max's compare (INTERNAL_BITS + 1), the running sum's add (SM_S_BITS) and the (m, s) select, at the
    # widths softmax.h's SmStats declares (they were 64-bit before)
    sm_rmw = (c["INTERNAL_BITS"] + 1) + c["SM_S_BITS"] + (c["INTERNAL_BITS"] + c["SM_S_BITS"])
    sm = c["ATTN_LANES"] * (2 * e2 + sm_rmw + rq_int)
    out.append(("attention: Q·Kᵀ + online softmax", qk_adders + sm, "rule+yosys",
                f"adder trees {c['ATTN_LANES']} × {c['HEAD_DIM'] - 1} × {c['QK_SUM_BITS']} bit; per lane the score "
                f"requantizer ({rq_int}), two exp2_neg ({e2} each: yosys exp2_neg per copy in the RTL top) and "
                f"compare/add/select at the statistics' widths ({sm_rmw}: INTERNAL_BITS + 1, SM_S_BITS, both)"))
    av = units["av_norm"]
    av_c = int(av["parameters"]["C"])
    # the running sums of the pass in flight: av_acc_t's adders (the other passes' sums sit in av_done_t, a
    # memory costed with the memories); AV_OUT picks lane l and part `part` of av_done_t per cycle: an
    # (ATTN_LANES · AV_OUT_PARTS)-to-1 mux per output column bit (a LUT6 is a 4:1 mux, rule), AV_OUT_W columns
    acc_w, acc_n = pr["arrays"]["av_acc_t"]
    av_acc = acc_n * acc_w * 2
    av_ways = c["ATTN_LANES"] * c["AV_OUT_PARTS"]
    av_mux = c["AV_OUT_W"] * c["AV_SUM_BITS"] * math.ceil(av_ways / 4)
    av_div, av_div_rule = recip_divider(c, "SM_RECIP_NUM_BITS", "SM_S_BITS")
    out.append(("attention: A·V", av_acc + av_mux + round(av["LUT"] / av_c) * c["AV_OUT_W"]
                + c["ATTN_LANES"] * e2 + av_div, "yosys+rule",
                f"accumulators of the pass in flight (av_acc_t: {acc_n} × {acc_w} bit, add + select, 2 LUT/bit), "
                f"AV_OUT's lane and part select ({c['AV_OUT_W']} × {c['AV_SUM_BITS']} bit × ⌈{av_ways}/4⌉ "
                f"LUT: {av_mux}), "
                f"normalise+requantize {round(av['LUT'] / av_c)} per column (yosys av_norm / C) × "
                f"AV_OUT_W={c['AV_OUT_W']} (a pass's {c['AV_LANE_COLS']} columns over AV_OUT_PARTS="
                f"{c['AV_OUT_PARTS']} cycles), an exp2_neg per lane, the 1/s {av_div_rule}"))
    ln = units["layernorm"]
    ln_div, ln_div_rule = recip_divider(c, "LN_RECIP_NUM_BITS", "LN_ROOT_BITS")
    out.append(("layernorm", round(ln["LUT"] / 4 * c["LN_LANES"]) + ln_div + units.get(
        "isqrt_pipe", {"LUT": 2009})["LUT"], "yosys+rule",
        f"yosys layernorm {ln['LUT']} LUT at 4 banks, × {c['LN_LANES']}/4 lanes; the 1/root {ln_div_rule}; "
        "isqrt 2,009 (yosys isqrt_pipe in the RTL top)"))
    md = units["moe_dispatch"]
    g_div, g_div_rule = recip_divider(c, "SM_RECIP_NUM_BITS", "GATE_S_BITS")
    out.append(("moe: router, top-k, queues", md["LUT"] + g_div, "yosys+rule",
                f"yosys moe_dispatch (E={md['parameters']['E']}, K={md['parameters']['K']}); the gate softmax's "
                f"1/s {g_div_rule}"))
    r_moe, _ = requant_lut(units, c["MOE_ACC_BITS"])
    # moe_finish shares its requantizers and residual adds over the MOE_PARTS cycles of a residual word: MOE_LANES
    # of them, each picking its value of the held word (a MOE_PARTS-to-1 select, 4:1 per LUT6, rule); the
    # epilogue's gate·y accumulate (EPI_GATE_ACC) stays one adder per output lane of the array
    fin = r_moe + 2 * shifter_lut(rs) + r_add
    sel = (c["MOE_ACC_BITS"] + c["RESID_BITS"]) * math.ceil(c["MOE_PARTS"] / 4) if c["MOE_PARTS"] > 1 else 0
    held = c["MOE_ACC_BITS"] * (1 + (math.ceil(c["EPI_PARTS"] / 4) if c["EPI_PARTS"] > 1 else 0))
    out.append(("moe: combine accumulator", c["EPI_LANES"] * held + c["MOE_LANES"] * (fin + sel),
                "yosys+rule",
                f"the epilogue's accumulate: per epilogue lane ({c['EPI_LANES']}) a {c['MOE_ACC_BITS']}-bit adder "
                f"and the select of its value of the held word ({held} per lane); "
                f"moe_finish: per lane (MOE_LANES={c['MOE_LANES']}, a word over MOE_PARTS={c['MOE_PARTS']} cycles) "
                f"the MOE_ACC_BITS requantizer ({r_moe}), the residual add (two RES_SUM_BITS={rs} shifts "
                f"{shifter_lut(rs)} each, {rs}-bit requantize {r_add}) and the word select ({sel})"))
    out.append(("control, AXI, loops", 3 * 728 + 2 * 918 + 433 + 15000, "yosys+rule",
                "3 weight readers (yosys axi_burst_reader 728), 2 writers (axi_burst_writer 918), s_axi control "
                "(433); loop counters, address generators and FSMs of ≈40 pipelined loops 15k (rule)"))
    return out


def estimate(cfg: ModelConfig, mode: PrecisionMode, params: HlsParams) -> dict:
    pr = probe(cfg, mode, params)
    c, t = pr["constants"], pr["types"]
    text = _sources_text()
    prag = {f: pragmas(function_body(f, text)) for f in
            ("m3vit_accel", "array_step", "array_engine", "attention_heads", "attention_head", "av_subgroup",
             "layernorm_rows", "weight_loader", "weight_reader", "mac_block", "block_placer")}
    macro = pragmas(text)  # the block stream's macro expansion (array_step's `blocks`)
    prag["array_step"].update({k: v for k, v in macro.items() if k == "blocks"})
    units = rtl_units()
    ks: dict[str, dict] = {}

    def k(name: str) -> dict:
        return ks.setdefault(name, {"name": name, "dsp": 0, "bram36": 0.0, "uram": 0, "lut": 0, "ff": 0,
                                    "basis": []})

    for m in memories(pr, prag["array_step"].get("blocks", {})):
        r = m.cost(prag, c)
        e = k(m.kernel)
        e["bram36"] += r["bram36"]
        e["uram"] += r["uram"]
        e["lut"] += r["lut"]
        e["ff"] += r["ff"]
        e["basis"].append(f"{m.name}: {r['bank']} ({r['how']})"
                          + (f" = {r['bram36']:g} BRAM36" if r["bram36"] else "")
                          + (f" = {r['uram']} URAM" if r["uram"] else "")
                          + (f" = {r['lut']} LUT (LUTRAM)" if r["lut"] else "")
                          + (f" = {r['ff']} FF (registers, not LUT)" if r["ff"] else "")
                          + (f", {m.note}" if m.note else ""))
    for op in OPERATORS:
        n = op.copies(c)
        if not n:
            continue
        a, b = op.widths(c, t)
        e = k(op.kernel)
        if op.fabric:
            e["lut"] += n * fabric_mul_lut(a, b)
            e["basis"].append(f"{n} × {a}×{b}-bit multiplier in fabric = {n * fabric_mul_lut(a, b)} LUT (rule): "
                              f"`{op.site}`")
        else:
            e["dsp"] += n * dsp_of(a, b)
            e["basis"].append(f"{n} × {a}×{b}-bit multiplier × {dsp_of(a, b)} DSP48E2: `{op.site}` ({op.note})")
    for name, lut, basis, rule in lut_terms(pr, units):
        e = k(name)
        e["lut"] += lut
        e["basis"].append(f"LUT {lut} ({basis}, estimated): {rule}")
    kernels = []
    for e in ks.values():
        e["bram36"] = math.ceil(e["bram36"])
        kernels.append(e)
    total = {r: sum(e[r] for e in kernels) for r in ("dsp", "bram36", "uram", "lut")}
    cap, lim = DEVICE.capacities(), DEVICE.limits()
    return {
        "config": cfg.name, "mode": mode.name, "params": asdict(params),
        "kernels": kernels, "total": total,
        "device": {"part": DEVICE.part, "capacity": {r: cap[r] for r in total}, "limit": {r: lim[r] for r in total},
                   "limit_fraction": {"dsp": DEVICE.dsp_limit, "bram36": DEVICE.ram_limit, "uram": DEVICE.ram_limit,
                                      "lut": DEVICE.lut_limit},
                   "percent": {r: round(100 * total[r] / cap[r], 1) for r in total},
                   "within_limits": {r: total[r] <= lim[r] for r in total}},
        "lut_note": "LUT figures are estimated (yosys RTL units scaled, or the stated rule); DSP/BRAM/URAM follow "
                    "the built design's probed widths/sizes and parsed pragmas; no Vitis run",
        "probe": {"constants": c, "types": t},
    }


def markdown(est: dict) -> str:
    """The estimate as the Markdown table hls/README.md carries (a test keeps it in step)."""
    rows = ["| kernel | DSP48E2 | BRAM36 | URAM | LUT (estimated) |", "|---|---:|---:|---:|---:|"]
    for e in est["kernels"]:
        rows.append(f"| {e['name']} | {e['dsp']} | {e['bram36']} | {e['uram']} | {e['lut']:,} |")
    t, d = est["total"], est["device"]
    rows.append(f"| **total** | **{t['dsp']}** | **{t['bram36']}** | **{t['uram']}** | **{t['lut']:,}** |")
    rows.append("| % of the " + d["part"].split("-")[0] + " | " + " | ".join(
        f"{d['percent'][r]} %" for r in ("dsp", "bram36", "uram", "lut")) + " |")
    rows.append("| practical limit (80 % / 80 % / 80 % / 65 %) | " + " | ".join(
        f"{d['limit'][r]:,}" + ("" if d["within_limits"][r] else " **exceeded**") for r in
        ("dsp", "bram36", "uram", "lut")) + " |")
    return "\n".join(rows) + "\n"


def fits(est: dict) -> bool:
    return all(est["device"]["within_limits"].values())


def with_overrides(params: HlsParams, items: list[str]) -> HlsParams:
    """``params`` with NAME=VALUE overrides of its integer fields (``--param``: the what-if sets hls/README.md
    quotes). ValueError names the bad item."""
    fields = {f.name for f in dataclasses.fields(HlsParams)}
    changes: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in fields or not value.lstrip("-").isdigit():
            raise ValueError(f"--param {item!r}: expected NAME=INTEGER with NAME one of {', '.join(sorted(fields))}")
        changes[name] = int(value)
    return dataclasses.replace(params, **changes)


def main(argv: list[str] | None = None) -> int:
    """``python -m m3vit.hw.estimate.hls_estimate``: the as-built resource estimate → build/hls/resources.json."""
    from ...cli.args import HelpFormatter, Parser, run_with
    from ...cli.outputs import OutputError, check_out_file, write_text_atomic
    from ...configs import CONFIGS, get_config
    from ...quant.spec import MODES, get_mode

    # Parser: an argument error is one line, as in every m3vit tool
    p = Parser(prog="python -m m3vit.hw.estimate.hls_estimate", description=main.__doc__, formatter_class=HelpFormatter)
    p.add_argument("--config", default="m3vit-tiny", choices=sorted(CONFIGS))
    p.add_argument("--mode", default="w8a8", choices=sorted(MODES))
    p.add_argument("--out", type=Path, default=REPO / "build" / "hls" / "resources.json")
    p.add_argument("--markdown", action="store_true", help="also print the Markdown table of hls/README.md")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a what-if parameter set: override a field of the mode's HlsParams (repeatable); also prints "
                        "the modelled ms per frame at batch 1 (experts equally loaded)")
    a = p.parse_args(argv)
    cfg, mode = get_config(a.config), get_mode(a.mode)

    def work() -> tuple[HlsParams, dict]:
        check_out_file(a.out)  # before the estimate's seconds of g++: a folder or read-only place is one line
        params = with_overrides(HlsParams.for_mode(mode), a.param)
        est = estimate(cfg, mode, params)
        write_text_atomic(a.out, json.dumps(est, indent=1) + "\n")  # never a half-written resources.json
        return params, est

    # a bad name, value or combination (HlsParams and the sources check their own), an unwritable --out: one line,
    # exit 2, nothing written
    done = run_with("hls_estimate", work, (ValueError, OSError, OutputError))
    if done is None:
        return 2
    params, est = done
    print(f"{'kernel':40s} {'DSP':>6s} {'BRAM36':>7s} {'URAM':>5s} {'LUT':>8s}")
    for e in est["kernels"]:
        print(f"{e['name']:40s} {e['dsp']:6d} {e['bram36']:7d} {e['uram']:5d} {e['lut']:8d}")
    d = est["device"]
    print(f"{'total':40s} " + " ".join(f"{est['total'][r]:{w}d}" for r, w in
                                       (("dsp", 6), ("bram36", 7), ("uram", 5), ("lut", 8))))
    print(f"{'limit (' + DEVICE.part + ')':40s} " + " ".join(f"{d['limit'][r]:{w}d}" for r, w in
                                                           (("dsp", 6), ("bram36", 7), ("uram", 5), ("lut", 8))))
    if a.markdown:
        print(markdown(est))
    print("percent of device: " + ", ".join(f"{r} {d['percent'][r]} %" for r in d["percent"])
          + f"; within limits: {fits(est)} → {a.out}")
    if a.param:
        from .hls_summary import frame_latency

        lat = frame_latency(cfg, mode, dataclasses.replace(params, batch=1))
        print(f"{params}: {lat['ms_per_frame']:.3f} ms per frame at batch 1 (modelled, experts equally loaded)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
