"""Build and drive the HLS C-simulation: the accelerator's C++ compiled by g++ into a shared library.

``build_library(cfg, mode)`` writes the generated config header, compiles ``hls/`` into
``build/csim/<hash>/libm3v_csim.so`` (the hash covers every source, the generated header and the
flags, so a rebuild happens only when something changed; a file lock keeps parallel test workers
from racing) and returns its path. :class:`CSim` loads it through ctypes and exposes the plain C ABI
of ``hls/csim/m3v_csim.h``: load a pack, load a layer program, set the task, run frames, read dumps,
and one entry point per kernel for the op-level tests.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...configs import ModelConfig
from ...quant.fixed import container_bytes, quantize
from ...quant.pack import Pack, read_pack, tile16
from ...quant.spec import PrecisionMode, get_mode
from ..gen.hls_config import HlsParams, config_header, config_key, write_config_header
from ..gen.program import DumpLayout, build_program

if TYPE_CHECKING:
    from ...quant.quantize import QuantizedModel

REPO = Path(__file__).resolve().parents[4]
HLS_DIR = REPO / "hls"
BUILD_DIR = REPO / "build"
# Loop labels name loops for Vitis pragmas and reports (-Wno-unused-label). -fno-gnu-unique: the
# kernels' on-chip buffers are static locals of inline templates, which g++ would otherwise export as
# process-wide unique symbols, so a second library (another config) loaded into the same process would
# silently use the first one's smaller buffers.
# -DM3V_DUMPS: the C-sim writes every activation point's debug dump (the synthesis build leaves it off).
DUMPS_FLAG = "-DM3V_DUMPS"
CXXFLAGS = ("-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas",
            "-Wno-unused-label", "-fPIC", "-fno-gnu-unique", DUMPS_FLAG)
LIB_SOURCES = ("src/m3vit_accel.cpp", "csim/csim_api.cpp")
TB_SOURCES = ("src/m3vit_accel.cpp", "csim/tb_main.cpp")


class CSimError(RuntimeError):
    """The C-simulation could not be built or refused its input."""


def ap_types_dir() -> Path:
    """The ap_int / hls_stream headers that PyPI hls4ml ships (found without importing hls4ml)."""
    spec = importlib.util.find_spec("hls4ml")
    if spec is None or not spec.submodule_search_locations:
        raise CSimError("hls4ml is not installed: run `make setup` (it provides the ap_types headers)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "templates" / "vivado" / "ap_types"
    if not (folder / "ap_int.h").is_file():
        raise CSimError(f"{folder} has no ap_int.h: reinstall the pinned hls4ml (`make setup`)")
    return folder


def _sources() -> list[Path]:
    return sorted(p for p in HLS_DIR.rglob("*") if p.suffix in (".h", ".cpp") and p.is_file()
                  and p.relative_to(HLS_DIR).parts[0] in ("include", "src", "csim"))


def _compiler() -> str:
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise CSimError(f"C++ compiler {cxx!r} not found: install g++ (Debian: apt-get install g++)")
    return cxx


def build_library(cfg: ModelConfig, mode: PrecisionMode | str, params: HlsParams | None = None,
                  ap_types: bool = False) -> Path:
    """Compile (or reuse) the C-sim shared library for one config, mode and parameter set."""
    return _build(cfg, mode, params, ap_types, testbench=False)


def build_testbench(cfg: ModelConfig, mode: PrecisionMode | str, params: HlsParams | None = None,
                    ap_types: bool = False, dumps: bool = True) -> Path:
    """Compile (or reuse) the standalone testbench executable (hls/csim/tb_main.cpp); ``dumps=False`` compiles
    the top as the synthesis build does (no M3V_DUMPS: no debug-dump code at all)."""
    return _build(cfg, mode, params, ap_types, testbench=True, dumps=dumps)


def _build(cfg: ModelConfig, mode: PrecisionMode | str, params: HlsParams | None, ap_types: bool,
           testbench: bool, dumps: bool = True) -> Path:
    mode = get_mode(mode) if isinstance(mode, str) else mode
    params = params or HlsParams.for_mode(mode)
    key = config_key(cfg, mode, params)
    header_dir = BUILD_DIR / "hls" / key
    write_config_header(cfg, mode, params, header_dir)
    # ap_private's own maybe-uninitialized warnings surface through inlining despite -isystem.
    ap_flags = ["-DM3V_AP_TYPES", "-Wno-maybe-uninitialized", "-Wno-uninitialized"]
    flags = [*(f for f in CXXFLAGS if dumps or f != DUMPS_FLAG), *(ap_flags if ap_types else [])]
    digest = hashlib.sha256()
    for src in _sources():
        digest.update(str(src.relative_to(HLS_DIR)).encode() + b"\0" + src.read_bytes())
    digest.update(config_header(cfg, mode, params).encode() + json.dumps(flags).encode())
    out_dir = BUILD_DIR / "csim" / digest.hexdigest()[:16]
    lib = out_dir / ("m3v_tb" if testbench else "libm3v_csim.so")
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if lib.is_file():
            return lib
        tmp = lib.with_name(lib.name + ".tmp")
        sources = TB_SOURCES if testbench else LIB_SOURCES
        cmd = [_compiler(), *flags, *([] if testbench else ["-shared"]), "-isystem", str(ap_types_dir()),
               "-I", str(header_dir), "-I", str(HLS_DIR / "include"), *(str(HLS_DIR / s) for s in sources),
               "-o", str(tmp)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            raise CSimError(f"C-sim build failed ({' '.join(cmd[:3])} ...):\n{res.stderr[-4000:]}")
        tmp.replace(lib)
        (out_dir / f"{lib.name}.json").write_text(json.dumps({"config": key, "flags": flags, "command": cmd}, indent=1))
    return lib


_I64P = ctypes.POINTER(ctypes.c_int64)


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(_I64P)


def _i64(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.int64))


class CSim:
    """One loaded C-sim library (a compiled config × mode × parameter set)."""

    def __init__(self, cfg: ModelConfig, mode: PrecisionMode | str, params: HlsParams | None = None,
                 ap_types: bool = False):
        self.cfg, self.mode = cfg, get_mode(mode) if isinstance(mode, str) else mode
        self.params = params or HlsParams.for_mode(self.mode)
        self.path = build_library(cfg, self.mode, self.params, ap_types)
        self.lib = ctypes.CDLL(str(self.path))
        self.lib.m3v_last_error.restype = ctypes.c_char_p
        self.lib.m3v_constant.restype = ctypes.c_int64
        self.lib.m3v_dsp_pack_exhaustive.restype = ctypes.c_int64
        self.pack: Pack | None = None
        self.layout: DumpLayout | None = None
        self.scratch_bytes = 0

    def constant(self, name: str) -> int:
        return int(self.lib.m3v_constant(name.encode()))

    def _check(self, rc: int) -> None:
        if rc:
            raise CSimError(self.lib.m3v_last_error().decode())

    # --- the accelerator ----------------------------------------------------------------------
    def load_pack(self, manifest_path: str | Path, dump_frames: int = 0) -> Pack:
        """Load a pack's payload and its layer program (dumps sized for ``dump_frames`` frames; 0 = off)."""
        pack = read_pack(manifest_path, expect_config=self.cfg, expect_mode=self.mode.name)
        raw = (Path(manifest_path).parent / pack.manifest["binary"]).read_bytes()
        payload = np.frombuffer(raw, dtype=np.uint8, offset=pack.manifest["header_size"]).copy()
        self._check(self.lib.m3v_load_pack(payload.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)),
                                           ctypes.c_uint64(payload.size)))
        self.pack = pack
        self.set_dump(dump_frames)
        return pack

    def set_dump(self, frames: int) -> None:
        assert self.pack is not None, "load a pack first"
        words, layout = build_program(self.pack, frames=max(frames, 1), dump=frames > 0)
        self._check(self.lib.m3v_load_program(words.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)),
                                              ctypes.c_uint32(words.size)))
        self.layout = layout if frames > 0 else None
        self.scratch_bytes = layout.nbytes if frames > 0 else 0

    def set_task(self, task: int | str) -> None:
        idx = self.cfg.task_index(task) if isinstance(task, str) else int(task)
        self._check(self.lib.m3v_set_task(ctypes.c_uint32(idx)))

    def run_quantized(self, qimages: np.ndarray) -> np.ndarray:
        """Quantized images [B, C, H, W] (integers in the image format) → integer tokens [B, N, D]."""
        qimages = np.asarray(qimages)
        want = (self.cfg.in_chans, *self.cfg.img_size)
        if qimages.ndim != 4 or tuple(qimages.shape[1:]) != want:
            raise CSimError(f"images must be [B, {want[0]}, {want[1]}, {want[2]}], got {list(qimages.shape)}")
        b = qimages.shape[0]
        act_bytes, res_bytes = container_bytes(self.mode.act_bits), container_bytes(self.mode.resid_bits)
        src = np.ascontiguousarray(qimages.astype(f"<i{act_bytes}"))
        out = np.zeros((b, self.cfg.num_tokens, self.cfg.dim), dtype=f"<i{res_bytes}")
        u8 = ctypes.POINTER(ctypes.c_uint8)
        self._check(self.lib.m3v_run(src.ctypes.data_as(u8), ctypes.c_uint32(b), out.ctypes.data_as(u8),
                                     ctypes.c_uint64(self.scratch_bytes)))
        return out.astype(np.int64)

    def run(self, images: np.ndarray, task: int | str) -> np.ndarray:
        """Float images (normalised) → integer tokens, quantized as the integer reference does."""
        assert self.pack is not None, "load a pack first"
        self.set_task(task)
        return self.run_quantized(quantize(images, self.pack.spec.activations["image"]))

    def dump(self, point: str) -> np.ndarray:
        """A point's values over every frame of the last run (up to ``dump_frames``), in the integer
        reference's layout; expert points batch by batch (see :func:`batched_reference`)."""
        if self.layout is None:
            raise CSimError("dumps are off: load the pack with dump_frames > 0")
        off, shape = self.layout.offsets[point], self.layout.shapes[point]
        buf = np.zeros(int(np.prod(shape)) * 4, dtype=np.uint8)
        self._check(self.lib.m3v_read_scratch(ctypes.c_uint64(off), ctypes.c_uint64(buf.size),
                                              buf.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))))
        return buf.view("<i4").astype(np.int64).reshape(shape)

    # --- op-level entry points ----------------------------------------------------------------
    def exp2(self, d, d_frac: int) -> np.ndarray:
        d = _i64(d)
        out = np.empty_like(d)
        self._check(self.lib.m3v_op_exp2(_ptr(d), ctypes.c_int64(d.size), d_frac, _ptr(out)))
        return out

    def softmax_stats(self, a, a_frac: int) -> tuple[np.ndarray, np.ndarray]:
        a = _i64(a)
        rows, cols = a.shape
        m, s = np.empty(rows, np.int64), np.empty(rows, np.int64)
        self._check(self.lib.m3v_op_softmax_stats(_ptr(a), ctypes.c_int64(rows), ctypes.c_int64(cols), a_frac,
                                                  _ptr(m), _ptr(s)))
        return m, s

    def reciprocal(self, s) -> np.ndarray:
        s = _i64(s)
        out = np.empty_like(s)
        self._check(self.lib.m3v_op_reciprocal(_ptr(s), ctypes.c_int64(s.size), _ptr(out)))
        return out

    def attention(self, scores, s_frac: int, v, shift: int, bits: int) -> np.ndarray:
        scores, v = _i64(scores), _i64(v)
        rows, n = scores.shape
        c = v.shape[1]
        out = np.empty((rows, c), np.int64)
        self._check(self.lib.m3v_op_attention(_ptr(scores), ctypes.c_int64(rows), ctypes.c_int64(n), s_frac, _ptr(v),
                                              ctypes.c_int64(c), shift, bits, _ptr(out)))
        return out

    def gelu(self, x, x_frac: int, out_shift: int, out_bits: int) -> np.ndarray:
        x = _i64(x)
        out = np.empty_like(x)
        self._check(self.lib.m3v_op_gelu(_ptr(x), ctypes.c_int64(x.size), x_frac, out_shift, out_bits, _ptr(out)))
        return out

    def layernorm(self, x, in_shift: int, eps_term: int, gain, bias, out_shift: int, out_bits: int) -> np.ndarray:
        x, gain, bias = _i64(x), _i64(gain), _i64(bias)
        rows, d = x.shape
        out = np.empty_like(x)
        self._check(self.lib.m3v_op_layernorm(_ptr(x), ctypes.c_int64(rows), ctypes.c_int64(d), in_shift,
                                              ctypes.c_int64(eps_term), _ptr(gain), _ptr(bias), out_shift, out_bits,
                                              _ptr(out)))
        return out

    def requantize(self, acc, shift: int, bits: int) -> np.ndarray:
        acc = _i64(acc)
        out = np.empty_like(acc)
        self._check(self.lib.m3v_op_requantize(_ptr(acc), ctypes.c_int64(acc.size), shift, bits, _ptr(out)))
        return out

    def requant_acc(self, acc, shift: int, bits: int) -> np.ndarray:
        """The epilogue's ACC_BITS-wide requantizer (``requant<bits, ACC_BITS>``)."""
        acc = _i64(acc)
        out = np.empty_like(acc)
        self._check(self.lib.m3v_op_requant_acc(_ptr(acc), ctypes.c_int64(acc.size), shift, bits, _ptr(out)))
        return out

    def add(self, x, y, x_lsh: int, y_lsh: int, shift: int, bits: int) -> np.ndarray:
        x, y = _i64(x), _i64(y)
        out = np.empty_like(x)
        self._check(self.lib.m3v_op_add(_ptr(x), _ptr(y), ctypes.c_int64(x.size), x_lsh, y_lsh, shift, bits,
                                        _ptr(out)))
        return out

    def topk(self, logits, k: int) -> np.ndarray:
        logits = _i64(logits)
        rows, e = logits.shape
        out = np.empty((rows, k), np.int64)
        self._check(self.lib.m3v_op_topk(_ptr(logits), ctypes.c_int64(rows), ctypes.c_int64(e), ctypes.c_int64(k),
                                         _ptr(out)))
        return out

    def gate_probs(self, logits, l_frac: int, top) -> np.ndarray:
        logits, top = _i64(logits), _i64(top)
        rows, e = logits.shape
        k = top.shape[1]
        out = np.empty((rows, k), np.int64)
        self._check(self.lib.m3v_op_gate_probs(_ptr(logits), ctypes.c_int64(rows), ctypes.c_int64(e), l_frac,
                                               _ptr(top), ctypes.c_int64(k), _ptr(out)))
        return out

    def isqrt(self, v) -> np.ndarray:
        v = _i64(v)
        out = np.empty_like(v)
        self._check(self.lib.m3v_op_isqrt(_ptr(v), ctypes.c_int64(v.size), _ptr(out)))
        return out

    def linear(self, x, w, bias) -> np.ndarray:
        """x [rows, k] · w [n, k]ᵀ + bias through the whole linear unit, w stored as the pack stores it."""
        x, bias = _i64(x), _i64(bias)
        rows, k = x.shape
        n = np.asarray(w).shape[0]
        tiled = np.ascontiguousarray(tile16(np.asarray(w)).astype(f"<i{container_bytes(self.mode.weight_bits)}"))
        out = np.empty((rows, n), np.int64)
        self._check(self.lib.m3v_op_linear(_ptr(x), tiled.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)),
                                           ctypes.c_uint64(tiled.nbytes), _ptr(bias), ctypes.c_int64(rows),
                                           ctypes.c_int64(n), ctypes.c_int64(k), _ptr(out)))
        return out

    def linear_chain(self, x, ws, biases, bias_skew: int = 0, experts: list[bool] | None = None) -> list[np.ndarray]:
        """Ops x[:, :k_i] · w_i [n_i, k_i]ᵀ + bias_i, all loaded by one weight loader ahead of the array (the
        top's regions); each w_i and bias_i at its own 64-byte aligned offset of one memory, as in a pack —
        the biases ``bias_skew`` bytes further (a router's biases for task t start t·experts biases in).
        ``experts[i]``: op i's weights are stored in the mode's expert-matrix container (w16a16e8: 8-bit)."""
        x = _i64(x)
        rows, k_max = x.shape
        bb = container_bytes(self.mode.bias_bits)
        experts = experts or [False] * len(ws)
        w_bytes = [container_bytes(self.mode.expert_bits if e else self.mode.weight_bits) for e in experts]
        blob, nk, offsets = bytearray(), [], []
        for w, b, wb in zip(ws, biases, w_bytes, strict=True):
            w = np.asarray(w)
            tiled = tile16(w).astype(f"<i{wb}").tobytes()
            offsets.append(len(blob))
            blob += tiled + bytes(-len(tiled) % 64)
            blob += bytes(bias_skew)
            offsets.append(len(blob))
            bias = np.asarray(b, np.int64).astype(f"<i{bb}").tobytes()
            blob += bias + bytes(-len(blob + bias) % 64)
            nk += [w.shape[0], w.shape[1]]
        out = np.empty(rows * sum(nk[0::2]), np.int64)
        mem = np.frombuffer(bytes(blob), np.uint8)
        nk_a, off_a, wb_a = np.asarray(nk, np.int64), np.asarray(offsets, np.uint64), _i64(w_bytes)
        self._check(self.lib.m3v_op_linear_chain(
            _ptr(x), ctypes.c_int64(rows), ctypes.c_int64(k_max), ctypes.c_int64(len(ws)), _ptr(nk_a),
            mem.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), ctypes.c_uint64(mem.nbytes),
            off_a.ctypes.data_as(ctypes.POINTER(ctypes.c_uint64)), _ptr(wb_a), _ptr(out)))
        outs, o = [], 0
        for n in nk[0::2]:
            outs.append(out[o:o + rows * n].reshape(rows, n))
            o += rows * n
        return outs

    def dsp_pack_exhaustive(self) -> int:
        return int(self.lib.m3v_dsp_pack_exhaustive())


_LOADED: dict[tuple, CSim] = {}


def cached(cfg: ModelConfig, mode: PrecisionMode | str, params: HlsParams | None = None,
           ap_types: bool = False) -> CSim:
    """One CSim per (config, mode, params, types) in this process (a library is loaded once)."""
    mode_name = mode if isinstance(mode, str) else mode.name
    key = (cfg.to_json(), mode_name, params or HlsParams.for_mode(mode_name), ap_types)
    if key not in _LOADED:
        _LOADED[key] = CSim(cfg, mode_name, params, ap_types)
    return _LOADED[key]


def batched_reference(q: QuantizedModel, images: np.ndarray, task: str, batch: int) -> dict[str, list[np.ndarray]]:
    """The integer reference's dumps of a run as the accelerator takes it: ``batch`` frames at a time.

    Only the expert points depend on the batching (their rows are patch-reordered within a batch:
    expert-major, then the next batch's); the others are the same as one run over every frame.
    """
    parts = [q.tokens(images[i:i + batch], task, dump=True)[1].dumps for i in range(0, len(images), batch)]
    merged: dict[str, list[np.ndarray]] = {}
    for name in parts[0]:
        if name.rsplit(".", 1)[-1] in ("e1", "egelu", "e2"):
            merged[name] = [a for p in parts for a in p[name]]
        else:
            merged[name] = [np.concatenate([p[name][0] for p in parts])]
    return merged


def reference_point(dumps: dict[str, list[np.ndarray]], name: str) -> np.ndarray:
    """A point of the integer reference's dumps, flattened in the order the accelerator writes it.

    Expert points (e1, egelu, e2) are dumped once per active expert call: concatenated, that is
    expert-major with each queue in ascending token order — the accelerator's patch-reordered order.
    """
    parts = dumps[name]
    if name.rsplit(".", 1)[-1] in ("e1", "egelu", "e2"):
        return np.concatenate([p.reshape(-1) for p in parts])
    if len(parts) != 1:
        raise CSimError(f"reference has {len(parts)} dumps of {name}; run it on one batch")
    return parts[0].reshape(-1)


def first_difference(sim: CSim, dumps: dict[str, list[np.ndarray]]) -> str | None:
    """None when every activation point is bit-identical; else the first point and index that differ."""
    assert sim.layout is not None, "load the pack with dump_frames > 0"
    for name, shape in sim.layout.shapes.items():
        got, want = sim.dump(name), reference_point(dumps, name)
        if got.size != want.size:
            return f"{name}: C-sim has {got.size} values, the reference {want.size}"
        bad = np.flatnonzero(got.reshape(-1) != want)
        if bad.size:
            idx = np.unravel_index(bad[0], shape)
            return (f"{name}: {bad.size} of {want.size} values differ, first at index {tuple(int(i) for i in idx)}: "
                    f"C-sim {got.reshape(-1)[bad[0]]}, reference {want[bad[0]]}")
    return None
