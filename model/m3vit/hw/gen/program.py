"""The layer program: the run-time half of the accelerator's configuration, built from a weight pack.

Compile time fixes the model shapes, the precision mode's widths, the parallelism and the tables
(``hls_config.py``). Everything that changes with the *pack* — where each tensor lies in the weight
memory, every per-layer shift, the LayerNorm ε terms, the scratch offsets of the debug dumps — travels
in a small array of little-endian u32 words that the top function reads over ``m_axi`` at start.
One bitstream therefore runs any pack of the same config and mode; switching task is the ``task``
register (the router matrices of every task are in the pack, the program gives their stride).

The per-op constants (shifts, LayerNorm ε terms and input narrowing, ...) are copied from the pack
manifest's ``hardware`` section, where ``m3vit.quant.hwconst`` computed them exactly: this module
derives no number of its own beyond offsets and strides.

Word layout: a header (``HEADER_FIELDS``), then ``depth`` layer descriptors of ``LAYER_FIELDS`` words
each. Signed values are two's complement; 64-bit values take a ``_lo``/``_hi`` pair. The field lists
below are the one definition: ``hls_config`` writes them into the C++ header as word indices.

Per-row weight scales (NUMERICS.md §3): a per-row pack's program has version ``PROGRAM_VERSION_PER_ROW``
and, after the layer descriptors, a row-shift table: ``ROW_SHIFT_HEADER_FIELDS`` (the patch embedding),
then ``depth`` blocks of ``ROW_SHIFT_LAYER_FIELDS`` — the pack offset of each linear's int8 shift vector
(and its stride for stacks), which the accelerator's weight loader reads beside each block's biases (so
offsets are 16-byte aligned and a stack's stride is its row count). A per-tensor pack's program is
unchanged (version ``PROGRAM_VERSION``, no table), so an accelerator built for it refuses a per-row
program by its version. A mixed-width mode's program (``w16a16e8``: 8-bit expert matrices beside 16-bit weights,
per-row by definition) has version ``PROGRAM_VERSION_MIXED`` and the same table: the expert containers are
compile-time (``EW_BYTES``), so only a build for that mode runs it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...configs import ModelConfig
from ...quant import intops, opgraph
from ...quant.hwmanifest import ops_by_name
from ...quant.pack import Pack
from ...quant.spec import PrecisionMode, QuantSpec, activation_points

PROGRAM_MAGIC = 0x5056334D  # "M3VP" little-endian
PROGRAM_VERSION = 2  # 2: header field dump_frames (dumps cover every frame of a run)
PROGRAM_VERSION_PER_ROW = 3  # 3: per-row weight scales, the row-shift table follows the layer descriptors
# 4: a mixed-width mode's program (w16a16e8: expert matrices narrower than the other weights): laid out as version 3
# (per-row, the same row-shift table); its own version so that only an accelerator built for such a mode runs it
# (the widths are compile-time: the HLS and RTL builds generated for the mode) and every other build refuses it.
PROGRAM_VERSION_MIXED = 4
NO_DUMP = 0xFFFFFFFF  # dump offset of a point that is not written
NO_ROW_SHIFT = 0xFFFFFFFF  # row-shift offset of an op that uses its descriptor's one shift

HEADER_FIELDS: tuple[str, ...] = (
    "magic", "version", "depth", "num_tasks", "dump", "dump_frames",
    "d_image", "d_embed",
    "patch_w", "patch_b", "pos", "cls", "patch_shift",
)

# every point a layer can write, in the op graph's order: the layer descriptor's dump fields (d_*)
LAYER_POINTS = opgraph.layer_points()

LAYER_FIELDS: tuple[str, ...] = (
    "is_moe",
    # LayerNorms: gain / bias offsets, input narrowing to 16 bits, output shift, ε term (u64)
    "ln1_g", "ln1_b", "ln1_in_shift", "ln1_shift", "ln1_eps_lo", "ln1_eps_hi",
    "ln2_g", "ln2_b", "ln2_in_shift", "ln2_shift", "ln2_eps_lo", "ln2_eps_hi",
    # attention
    "q_w", "q_b", "q_shift", "k_w", "k_b", "k_shift", "v_w", "v_b", "v_shift",
    "scores_shift", "scores_frac", "attn_shift",
    "proj_w", "proj_b", "proj_shift",
    # residual adds: left shifts aligning both operands, then the narrowing shift
    "mid_x_lsh", "mid_y_lsh", "mid_shift", "out_x_lsh", "out_y_lsh", "out_shift",
    # dense MLP
    "fc1_w", "fc1_b", "fc1_shift", "gelu_in_frac", "gelu_shift", "fc2_w", "fc2_b", "fc2_shift",
    # MoE: router of task t at gate_w + t * gate_w_stride; expert e at e1_w + e * e1_w_stride, ...
    "gate_w", "gate_w_stride", "gate_b", "gate_b_stride", "gate_shift", "gate_frac",
    "e1_w", "e1_w_stride", "e1_b", "e1_b_stride", "e1_shift", "egelu_in_frac", "egelu_shift",
    "e2_w", "e2_w_stride", "e2_b", "e2_b_stride", "e2_shift", "moe_shift",
    # scratch byte offsets of each point's dump (NO_DUMP when not written)
    *(f"d_{p}" for p in LAYER_POINTS),
)

# Per-row packs only: byte offsets of the int8 shift vectors ({op}.shift), stacks with their stride.
ROW_SHIFT_HEADER_FIELDS: tuple[str, ...] = ("patch_rs",)
ROW_SHIFT_LAYER_FIELDS: tuple[str, ...] = (
    "q_rs", "k_rs", "v_rs", "proj_rs", "fc1_rs", "fc2_rs",
    "gate_rs", "gate_rs_stride", "e1_rs", "e1_rs_stride", "e2_rs", "e2_rs_stride",
)

DUMP_BYTES = 4  # every dumped value is a little-endian int32


class ProgramError(ValueError):
    """A pack cannot be run by an accelerator built for a given config and mode."""


# --- shift ranges the accelerator's datapath is sized for (NUMERICS.md §4.4, §4.6; hls_config generates them) ----
def res_align_max(mode: PrecisionMode) -> int:
    """Largest alignment (x_align, y_align) of a residual add: both operands are RESID_BITS wide, so the aligned
    sum fits RESID_BITS + res_align_max + 1 bits — the width of the epilogue's and the MoE combine's adder and
    requantizer (one operand's format up to RESID_BITS - 1 fractional bits finer than the other's)."""
    return mode.resid_bits - 1


def gelu_delta_bits() -> int:
    """Unsigned width of the largest GELU_DELTA entry (δ >= 0, and so is every interpolated δ)."""
    return int(max(int(v) for v in intops.GELU_DELTA_TABLE)).bit_length()


def gelu_align_max(mode: PrecisionMode) -> int:
    """Largest x_align of the GELU (input coarser than DELTA_FRAC): y = max(x, 0)·2^x_align − δ·2^delta_align then
    fits INTERNAL_BITS + gelu_align_max bits."""
    return mode.internal_bits - 1


def gelu_frac_range(mode: PrecisionMode) -> tuple[int, int]:
    """[min, max] of the GELU input's fractional bits the epilogue's GELU is sized for: x_align <= gelu_align_max,
    and δ·2^delta_align (< 2^(GELU_DELTA_BITS + delta_align)) within the same INTERNAL_BITS + gelu_align_max bits."""
    y_bits = mode.internal_bits + gelu_align_max(mode)
    return intops.DELTA_FRAC - gelu_align_max(mode), intops.DELTA_FRAC + y_bits - 1 - gelu_delta_bits()


def check_shift_ranges(mode: PrecisionMode, name: str, kind: str, k: dict) -> None:
    """Refuse a residual add (`kind` "add") or a GELU ("gelu") whose alignment exceeds what the datapath is built
    for (the accelerator's adders and requantizers are sized from these bounds, not 64 bits wide)."""
    if kind == "add":
        lim = res_align_max(mode)
        for a in ("x_align", "y_align"):
            if not 0 <= int(k[a]) <= lim:
                raise ProgramError(f"{name}: residual-add {a} = {k[a]} is outside [0, {lim}] (mode {mode.name}: "
                                   f"operand formats more than RESID_BITS - 1 = {lim} fractional bits apart); the "
                                   f"accelerator's residual adder is RESID_BITS + {lim} + 1 bits wide")
    else:
        lo, hi = gelu_frac_range(mode)
        if not lo <= int(k["x_frac"]) <= hi:
            raise ProgramError(f"{name}: GELU input has {k['x_frac']} fractional bits, outside [{lo}, {hi}] "
                               f"(mode {mode.name}): the accelerator's GELU is INTERNAL_BITS + "
                               f"{gelu_align_max(mode)} bits wide")


def _u32(v: int) -> int:
    if not -(1 << 31) <= v < (1 << 32):
        raise ProgramError(f"program value {v} does not fit 32 bits")
    return v & 0xFFFFFFFF


def op_constants(pack: Pack) -> dict[str, dict]:
    """Per-op constants (``patch``, ``l{i}.{op}``) from the manifest's ``hardware`` section, computed
    once, exactly, by ``m3vit.quant.hwconst`` when the pack was written (and checked when it was read)."""
    hw = pack.manifest.get("hardware")
    if not hw:
        raise ProgramError("the pack's manifest has no hardware section: re-export it with m3vit-quantize")
    return ops_by_name(hw)


def _layer_point_shape(cfg: ModelConfig, point: str, b: int) -> tuple[int, ...]:
    n, d, h = cfg.num_tokens, cfg.dim, cfg.num_heads
    rows_k = b * n * cfg.top_k  # every token goes to exactly top_k distinct experts
    return {
        "scores": (b, h, n, n), "attn": (b, h, n, cfg.head_dim),
        "fc1": (b, n, cfg.mlp_hidden), "gelu": (b, n, cfg.mlp_hidden),
        "gate": (b * n, cfg.num_experts),
        "e1": (rows_k, cfg.expert_hidden), "egelu": (rows_k, cfg.expert_hidden), "e2": (rows_k, d),
        "moe": (b * n, d),
    }.get(point, (b, n, d))


def point_shapes(cfg: ModelConfig, frames: int) -> dict[str, tuple[int, ...]]:
    """Shape of every activation point's dump for ``frames`` frames, in the integer reference's layout.

    Every point's dump is frame-major, so frame f's values start at f · (values per frame); expert
    points (e1, egelu, e2) hold BATCH frames at a time in patch-reordered order (expert-major, each
    queue in ascending token order), a batch's rows following the previous batch's.
    """
    b = frames
    shapes: dict[str, tuple[int, ...]] = {"image": (b, cfg.in_chans, *cfg.img_size),
                                          "embed": (b, cfg.num_tokens, cfg.dim)}
    for name in activation_points(cfg):
        if name not in shapes:
            shapes[name] = _layer_point_shape(cfg, name.split(".")[1], b)
    return shapes


def frame_dump_values(cfg: ModelConfig) -> dict[str, int]:
    """int32 values one frame adds to each point's dump: ``image``, ``embed`` and every layer point
    (by its name in ``LAYER_POINTS``) — what the top advances a batch's dump offsets by, per frame."""
    out = {"image": cfg.in_chans * cfg.img_size[0] * cfg.img_size[1], "embed": cfg.num_tokens * cfg.dim}
    out.update({p: int(np.prod(_layer_point_shape(cfg, p, 1))) for p in LAYER_POINTS})
    return out


@dataclass(frozen=True)
class DumpLayout:
    """Where each point's dump lies in the scratch buffer (byte offsets, int32 values)."""

    offsets: dict[str, int]
    shapes: dict[str, tuple[int, ...]]
    nbytes: int

    @classmethod
    def for_config(cls, cfg: ModelConfig, frames: int) -> DumpLayout:
        shapes = point_shapes(cfg, frames)
        offsets, off = {}, 0
        for name, shape in shapes.items():
            offsets[name] = off
            off += -(-int(np.prod(shape)) * DUMP_BYTES // 64) * 64
        return cls(offsets, shapes, off)

    def read(self, scratch: bytes | np.ndarray, name: str) -> np.ndarray:
        count = int(np.prod(self.shapes[name]))
        raw = np.frombuffer(scratch, dtype="<i4", count=count, offset=self.offsets[name])
        return raw.astype(np.int64).reshape(self.shapes[name])


def check_widths(spec: QuantSpec, cfg: ModelConfig) -> None:
    """Every activation format must have its width class's width (the bitstream's compile-time widths)."""
    from ...quant.spec import width

    for name, cls_ in activation_points(cfg).items():
        want = width(spec.mode, cls_)
        if spec.activations[name].bits != want:
            raise ProgramError(f"point {name} is {spec.activations[name]} but mode {spec.mode.name} gives "
                               f"{cls_} points {want} bits; re-export the pack")


def _tensor_entries(pack: Pack) -> dict[str, dict]:
    return {t["name"]: t for t in pack.manifest["tensors"]}


def _stride(entry: dict) -> int:
    """Bytes between consecutive matrices of a stack (experts, or one router per task)."""
    shape = entry["stored_shape"]
    return entry["nbytes"] // shape[0]


def build_program(pack: Pack, frames: int = 1, dump: bool = False) -> tuple[np.ndarray, DumpLayout]:
    """Program words for ``pack`` and the scratch layout of its dumps (sized for ``frames`` frames)."""
    cfg, spec = pack.cfg, pack.spec
    check_widths(spec, cfg)
    tensors = _tensor_entries(pack)
    layout = DumpLayout.for_config(cfg, frames)

    def off(name: str) -> int:
        return tensors[name]["offset"]

    def dump_at(point: str) -> int:
        return layout.offsets[point] if dump and point in layout.offsets else NO_DUMP

    c = op_constants(pack)
    per_row = bool(pack.spec.row_fracs)

    def shift_of(op: str) -> int:  # per-row ops have no single shift: the row-shift table says where theirs are
        return 0 if "row_shift" in c[op] else c[op]["shift"]

    header = {
        "magic": PROGRAM_MAGIC, "version": program_version(spec),
        "depth": cfg.depth, "num_tasks": len(cfg.tasks),
        "dump": int(dump), "dump_frames": frames if dump else 0,
        "d_image": dump_at("image"), "d_embed": dump_at("embed"),
        "patch_w": off("patch.w"), "patch_b": off("patch.b"), "pos": off("pos"), "cls": off("cls"),
        "patch_shift": shift_of("patch"),
    }
    words = [_u32(header[f]) for f in HEADER_FIELDS]
    for i in range(cfg.depth):
        o = f"l{i}"
        fields: dict[str, int] = dict.fromkeys(LAYER_FIELDS, 0)
        fields["is_moe"] = int(cfg.is_moe(i))
        for ln in ("ln1", "ln2"):
            k = c[f"{o}.{ln}"]
            eps = int(k["eps_term"])
            if not 0 <= eps < 1 << 63:
                raise ProgramError(f"{o}.{ln}: LayerNorm ε term {eps} does not fit 63 bits")
            fields.update({f"{ln}_g": off(f"{o}.{ln}.g"), f"{ln}_b": off(f"{o}.{ln}.b"),
                           f"{ln}_in_shift": k["in_shift"], f"{ln}_shift": k["shift"],
                           f"{ln}_eps_lo": eps & 0xFFFFFFFF, f"{ln}_eps_hi": eps >> 32})
        for op in ("q", "k", "v", "proj"):
            fields.update({f"{op}_w": off(f"{o}.{op}.w"), f"{op}_b": off(f"{o}.{op}.b"),
                           f"{op}_shift": shift_of(f"{o}.{op}")})
        fields["scores_shift"] = c[f"{o}.scores"]["shift"]
        fields["scores_frac"] = c[f"{o}.attn"]["scores_frac"]
        fields["attn_shift"] = c[f"{o}.attn"]["shift"]
        for add in ("mid", "out"):
            k = c[f"{o}.{add}"]
            check_shift_ranges(spec.mode, f"{o}.{add}", "add", k)
            fields.update({f"{add}_x_lsh": k["x_align"], f"{add}_y_lsh": k["y_align"], f"{add}_shift": k["shift"]})
        if cfg.is_moe(i):
            for op in ("gate", "e1", "e2"):
                w, b = tensors[f"{o}.{op}.w"], tensors[f"{o}.{op}.b"]
                fields.update({f"{op}_w": w["offset"], f"{op}_w_stride": _stride(w), f"{op}_b": b["offset"],
                               f"{op}_b_stride": _stride(b), f"{op}_shift": shift_of(f"{o}.{op}")})
            fields["gate_frac"] = c[f"{o}.route"]["logit_frac"]
            check_shift_ranges(spec.mode, f"{o}.egelu", "gelu", c[f"{o}.egelu"])
            fields["egelu_in_frac"], fields["egelu_shift"] = c[f"{o}.egelu"]["x_frac"], c[f"{o}.egelu"]["shift"]
            fields["moe_shift"] = c[f"{o}.moe"]["shift"]
        else:
            for op in ("fc1", "fc2"):
                fields.update({f"{op}_w": off(f"{o}.{op}.w"), f"{op}_b": off(f"{o}.{op}.b"),
                               f"{op}_shift": shift_of(f"{o}.{op}")})
            check_shift_ranges(spec.mode, f"{o}.gelu", "gelu", c[f"{o}.gelu"])
            fields["gelu_in_frac"], fields["gelu_shift"] = c[f"{o}.gelu"]["x_frac"], c[f"{o}.gelu"]["shift"]
        for p in LAYER_POINTS:
            fields[f"d_{p}"] = dump_at(f"{o}.{p}")
        words += [_u32(fields[f]) for f in LAYER_FIELDS]
    if per_row:
        words += row_shift_table(pack, tensors)
    return np.array(words, dtype="<u4"), layout


def program_version(spec: QuantSpec) -> int:
    """2: per-tensor; 3: per-row weight scales; 4: a mixed-width mode (per-row, 8-bit expert matrices)."""
    if spec.mode.mixed_weights:
        if not spec.row_fracs:
            raise ProgramError(f"mode {spec.mode.name} needs per-row weight scales: re-export the pack")
        return PROGRAM_VERSION_MIXED
    return PROGRAM_VERSION_PER_ROW if spec.row_fracs else PROGRAM_VERSION


def row_shift_table(pack: Pack, tensors: dict[str, dict]) -> list[int]:
    """The per-row program's trailing table: where each linear's int8 shift vector lies in the pack."""
    cfg = pack.cfg
    # The accelerator's loader reads each block's shifts by 128-bit beats beside its biases: vectors start on a
    # beat, and a stack's vectors are contiguous (stride = the matrix's row count, one byte per row).
    stack_rows = {"gate": cfg.num_experts, "e1": cfg.expert_hidden, "e2": cfg.dim}

    def aligned(name: str, entry: dict) -> int:
        if entry["offset"] % 16:
            raise ProgramError(f"{name}: shift vector at byte {entry['offset']} is not 16-byte aligned: "
                               "rebuild the pack with m3vit-quantize")
        return entry["offset"]

    words = [_u32(aligned("patch.shift", tensors["patch.shift"]))]
    for i in range(cfg.depth):
        o = f"l{i}"
        fields = dict.fromkeys(ROW_SHIFT_LAYER_FIELDS, NO_ROW_SHIFT)
        ops = ("q", "k", "v", "proj") + (("gate", "e1", "e2") if cfg.is_moe(i) else ("fc1", "fc2"))
        for op in ops:
            entry = tensors[f"{o}.{op}.shift"]
            fields[f"{op}_rs"] = aligned(f"{o}.{op}.shift", entry)
            if f"{op}_rs_stride" in fields:
                fields[f"{op}_rs_stride"] = _stride(entry)
                if fields[f"{op}_rs_stride"] != stack_rows[op]:
                    raise ProgramError(f"{o}.{op}.shift: stride {fields[f'{op}_rs_stride']} bytes, not the row "
                                       f"count {stack_rows[op]}: the pack's shift stack is not contiguous int8")
        words += [_u32(fields[f]) for f in ROW_SHIFT_LAYER_FIELDS]
    return words


def program_words(cfg: ModelConfig, per_row: bool = False) -> int:
    """Words of a program for ``cfg`` (with the row-shift table of a per-row pack when ``per_row``)."""
    base = len(HEADER_FIELDS) + cfg.depth * len(LAYER_FIELDS)
    return base + (len(ROW_SHIFT_HEADER_FIELDS) + cfg.depth * len(ROW_SHIFT_LAYER_FIELDS) if per_row else 0)
