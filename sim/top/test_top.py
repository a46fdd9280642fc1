"""Accelerator top (rtl/m3vit_top.sv), run by the host runtime's own driver: control slave, program header fetch,
image → scratch dump over the AXI4 masters, with DDR modelled by cocotbext-axi ``AxiRam`` (one per m_axi bundle,
one shared memory) and random latency / back-pressure on every AXI channel.

The buffers lie where the driver's allocator puts them (the simulated ZCU104's DDR above 4 GiB); the weight pack
and the layer program are the micro model's (``vectors.py``), the program built by ``m3vit.hw.gen.program``; the
scratch dump of ``image`` must equal the integer reference's ``image`` dump bit for bit.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import numpy as np
import pytest

try:
    import cocotb
except ImportError:  # pytest still collects the runner below and skips with the reason
    cocotb = None

from common import BUILD, TB, pause_pattern, run_unit

TOP_CYCLES_FILE = BUILD / "top_cycles.json"
FRAMES = 2  # the device batch: both reference frames in one ap_start
TOP_OPT = "-O2"  # C++ optimisation of the top's model: its eval, not Python, bounds the simulation speed
POLL_CYCLES = 2000  # simulated cycles between the driver's register reads (its polling interval)
# the micro vectors' packs (sim/vectors.py): variant → (pack folder, precision mode)
# (w8a8: the default, per-row weight scales; w8a8-tensor: per-tensor, the same model)
PACKS = {"w8a8": ("pack", "w8a8"), "w16a16": ("pack16", "w16a16"), "w8a8-tensor": ("pack_tensor", "w8a8"),
         "w16a16e8": ("pack_mixed", "w16a16e8"), "w8a16": ("pack_w8a16", "w8a16")}


class TopTB(TB):
    def __init__(self, dut, pauses: bool) -> None:
        super().__init__(dut)
        from axi_host import AxiLiteIP, RamBoard, axil_master, host_package, set_axil_pauses
        from cocotbext.axi import AxiBus, AxiRam
        from cocotbext.axi.sparse_memory import SparseMemory

        host_package()
        self.mem = SparseMemory(2**40)  # len() must fit an index; the board DDR lies below 2**40
        self.rams = {}
        for name in [f"m_axi_{b}" for b in self.params["bundles"]] + ["s_axi_control"]:  # per-channel chatter
            logging.getLogger(f"cocotb.{dut._name}.{name}").setLevel(logging.WARNING)
        for bundle in self.params["bundles"]:
            ram = AxiRam(AxiBus.from_prefix(dut, f"m_axi_{bundle}"), dut.ap_clk, dut.ap_rst_n,
                         reset_active_level=False, mem=self.mem)
            for part in (ram.write_if, ram.read_if):
                part.log.setLevel(logging.WARNING)
            self.rams[bundle] = ram
        self.axil = axil_master(dut)
        seed = self.rng.randrange(1 << 20)
        if pauses:
            set_axil_pauses(self.axil, pause_pattern, seed)
            for i, ram in enumerate(self.rams.values()):
                chans = (ram.write_if.aw_channel, ram.write_if.w_channel, ram.write_if.b_channel,
                         ram.read_if.ar_channel, ram.read_if.r_channel)
                for j, ch in enumerate(chans):
                    ch.set_pause_generator(pause_pattern(seed * 7 + i * 10 + j, 0.3))
        self.board = RamBoard(self.mem)
        self.ip = AxiLiteIP(self.axil, dut.ap_clk, read_gap=POLL_CYCLES)
        self.states: list[tuple[int, int]] = []  # (cycle, sequencer state) at every change (cycles test)

    async def trace_states(self) -> None:
        from cocotb.triggers import RisingEdge

        last = None
        while True:
            await RisingEdge(self.dut.ap_clk)
            state = int(self.dut.state.value)
            if state == self.params["states"].index("S_LAYERS"):
                lay = self.dut.g_layers.u_layers
                state = (state, int(lay.layer.value), int(lay.step.value))
            if state != last:
                self.states.append((self.cycle, state))
                if isinstance(state, tuple):
                    self.log.info("cycle %d: layer %d step %d", self.cycle, state[1], state[2])
                last = state

    async def start(self, trace: bool = False) -> None:
        await self.reset()
        if trace:
            cocotb.start_soon(self.trace_states())

    def unchanged(self, driver, name: str, want: bytes) -> bool:
        """Whether buffer ``name`` still holds ``want`` in DDR (the top writes nothing but scratch)."""
        buf = driver.buffers[name]
        return bytes(self.mem.read(int(buf.device_address), len(want))) == want

    def driver(self, frames: int = FRAMES):
        from m3vit.quant.fixed import QFormat
        from m3vit_host.driver import AcceleratorDriver
        from m3vit_host.layout import BufferLayout

        lay = self.params["layout"]
        layout = BufferLayout(frames=frames, image_shape=tuple(lay["image_shape"]),
                              image_format=QFormat(*lay["image_format"]), token_shape=tuple(lay["token_shape"]),
                              token_format=QFormat(*lay["token_format"]), scratch_bytes=lay["scratch_bytes"])
        return AcceleratorDriver(self.ip, self.board.allocate, layout, timeout_s=300.0, poll_interval_s=0.0,
                                 source="the RTL top")

    def inputs(self) -> tuple[bytes, bytes, np.ndarray]:
        """The pack payload, the program words and the reference frames quantized to the pack's image format."""
        payload = Path(self.params["payload"]).read_bytes()
        program = np.load(self.params["program"]).astype("<u4").tobytes()
        return payload, program, np.load(self.params["images"]).astype(np.int64)

    def scratch(self, driver) -> bytes:
        buf = driver.buffers["scratch"]
        buf.invalidate()
        return np.ascontiguousarray(buf).tobytes()

    def dump(self, driver, point: str, frames: int) -> np.ndarray:
        """Point ``point``'s dump for the first ``frames`` frames, read back from scratch (int32, frame-major)."""
        off, shape = self.params["dumps"][point]
        count = frames * int(np.prod(shape[1:]))
        raw = np.frombuffer(self.scratch(driver), dtype="<i4", count=count, offset=off).astype(np.int64)
        return raw.reshape(frames, *shape[1:])

    def image_dump(self, driver, frames: int) -> np.ndarray:
        return self.dump(driver, "image", frames)

    def reference_embed(self) -> np.ndarray:
        """The integer reference's `embed` dump of the reference frames (task-independent: take the first task)."""
        from vectors import Vectors

        return Vectors(self.params["vectors"]).dump("embed")

    def reference(self, task: str) -> dict:
        return np.load(Path(self.params["reference"]) / f"{task}.npz")

    def reference_tokens(self, task: str) -> np.ndarray:
        return self.reference(task)["tokens"].astype(np.int64)

    def csim_tokens(self, task: str) -> np.ndarray:
        return self.reference(task)["csim_tokens"].astype(np.int64)

    def check_points(self, driver, task: str, frames: list[int]) -> None:
        """Compare every point the top leaves in scratch (slot i: reference frame frames[i]) with the per-frame
        integer reference, in forward order: the assertion names the first frame, point and flat index that differ."""
        ref = self.reference(task)
        scratch = self.scratch(driver)
        for slot, f in enumerate(frames):
            for point in self.params["points"]:
                off, per_frame = self.params["point_dumps"][point]
                got = np.frombuffer(scratch, dtype="<i4", count=per_frame, offset=off + slot * per_frame * 4)
                want = ref[f"f{f}.{point}"].reshape(-1)
                diff = first_difference(got.astype(np.int64), want)
                assert not diff, f"task {task}, frame {f}, point {point}: {diff}"

    def status(self) -> dict[str, int]:
        return {"program_error": int(self.dut.program_error.value), "axi_error": int(self.dut.axi_error.value)}


def first_difference(got: np.ndarray, want: np.ndarray) -> str:
    bad = np.flatnonzero(got.reshape(-1) != want.reshape(-1))
    if not len(bad):
        return ""
    i = int(bad[0])
    return f"{len(bad)} of {want.size} values differ, first at flat index {i}: got {got.reshape(-1)[i]}, " \
           f"want {want.reshape(-1)[i]}"


async def run_driver(func, *args):
    from axi_host import run_blocking

    return await run_blocking(func, *args)


if cocotb is not None:
    async def run_checked(tb, driver, task_index: int, frames: list[int]) -> None:
        """set_task (one register write) → run the reference frames ``frames`` as one device batch → every point
        the top leaves in scratch, and the output tokens, equal the integer reference's."""
        images = tb.inputs()[2]
        await run_driver(driver.set_task, task_index)
        tokens = await run_driver(driver.run, images[frames])
        assert tb.status() == {"program_error": 0, "axi_error": 0}, tb.status()
        assert int(tb.dut.task_id.value) == task_index, "the task register reached the sequencer"
        task = tb.params["tasks"][task_index]
        diff = first_difference(tb.image_dump(driver, len(frames)), images[frames])
        assert not diff, f"image dump: {diff}"
        tb.check_points(driver, task, frames)
        diff = first_difference(np.asarray(tokens, dtype=np.int64), tb.reference_tokens(task)[frames])
        assert not diff, f"output tokens, task {task}, frames {frames}: {diff}"
        diff = first_difference(np.asarray(tokens, dtype=np.int64), tb.csim_tokens(task)[frames])
        assert not diff, f"output tokens vs the HLS C-simulation, task {task}, frames {frames}: {diff}"

    @cocotb.test(timeout_time=400, timeout_unit="ms")
    async def frame_bit_exact(dut):
        """The driver loads the pack and runs one frame (of the first task, or the runner's task_index) with random AXI
        pauses: every activation point in scratch and the output tokens are the integer reference's, bit for bit
        (the first difference names the frame, layer point and index); the pack and the program in DDR are left
        alone."""
        tb = TopTB(dut, pauses=True)
        await tb.start()
        payload, program, _ = tb.inputs()
        driver = tb.driver()
        await run_driver(driver.load, payload, program)
        assert all(int(driver.buffers[n].device_address) >> 32 for n in driver.buffers), "buffers above 4 GiB"
        await run_checked(tb, driver, tb.params.get("task_index", 0), [0])
        assert tb.unchanged(driver, "weights", payload) and tb.unchanged(driver, "program", program), \
            "the pack or the program in DDR changed"

    @cocotb.test(timeout_time=1500, timeout_unit="ms")
    async def alternating_tasks(dut):
        """Every task, switched by one register write between runs (no reload), with random AXI pauses: a batch of
        both frames, then one frame per task in an alternating order — all bit-exact (opt-in: --top-all)."""
        tb = TopTB(dut, pauses=True)
        await tb.start()
        payload, program, _ = tb.inputs()
        driver = tb.driver()
        await run_driver(driver.load, payload, program)
        await run_checked(tb, driver, 0, list(range(FRAMES)))
        n = len(tb.params["tasks"])
        for i, t in enumerate([*range(1, n), 0]):
            await run_checked(tb, driver, t, [i % FRAMES])

    @cocotb.test(timeout_time=5, timeout_unit="ms")
    async def bad_program_or_task_writes_nothing(dut):
        """A program for another build (bad magic, other depth, another mode's version: a mixed-width build runs its
        mode's version 4 alone, every other build refuses it) or a task out of range: done, nothing written."""
        from m3vit.hw.gen import interface

        tb = TopTB(dut, pauses=True)
        await tb.start()
        payload, program, images = tb.inputs()
        driver = tb.driver()
        await run_driver(driver.load, payload, program)
        prog = driver.buffers["program"]
        words = tb.params["header_fields"]
        for field, value in (("magic", 0x12345678), ("depth", tb.params["depth"] + 1),
                             ("version", tb.params["wrong_version"])):
            at = slice(4 * words.index(field), 4 * words.index(field) + 4)
            good = prog[at].copy()
            prog[at] = np.frombuffer(np.uint32(value).tobytes(), np.uint8)
            prog.flush()
            await run_driver(driver.set_task, 0)
            await run_driver(driver.run, images)
            assert tb.status()["program_error"] == 1, f"a program with a wrong {field} was run"
            prog[at] = good
            prog.flush()
        await run_driver(driver.set_task, tb.params["num_tasks"])  # one past the last task
        await run_driver(driver.run, images)
        assert tb.status()["program_error"] == 1, "a task out of range was run"
        assert not np.frombuffer(tb.scratch(driver), dtype=np.uint8).any(), "a rejected run wrote the dump"
        # the layers keep their activations in the dumps: a program without them is refused too
        at = slice(4 * words.index("dump"), 4 * words.index("dump") + 4)
        prog[at] = np.frombuffer(np.uint32(0).tobytes(), np.uint8)
        prog.flush()
        await run_driver(driver.set_task, 0)
        await run_driver(driver.run, images[:1])
        assert tb.status()["program_error"] == 1, "a program without dumps was run"
        assert not np.frombuffer(tb.scratch(driver), dtype=np.uint8).any(), "a rejected run wrote the dump"
        assert not np.asarray(driver.buffers["tokens"]).any(), "a rejected run wrote tokens"
        assert await tb.axil.read_dword(interface.REG_CTRL) & interface.CTRL_AP_IDLE

    @cocotb.test(timeout_time=400, timeout_unit="ms")
    async def cycles(dut):
        """One frame without pauses (bit-exact like the others): cycles from ap_start to ap_done, per top-level stage,
        per layer and per op of each layer (start/done of every op from the layers' step register)
        → build/sim/top_cycles.json."""
        tb = TopTB(dut, pauses=False)
        await tb.start(trace=True)
        payload, program, _ = tb.inputs()
        driver = tb.driver()
        await run_driver(driver.load, payload, program)
        first = len(tb.states)
        await run_checked(tb, driver, 0, [0])
        names, ops = tb.params["states"], tb.params["ops"]
        trace = tb.states[first:]
        stages: dict[str, int] = {}
        layers: list[dict] = [{"layer": i, "cycles": 0, "ops": {}} for i in range(tb.params["depth"])]
        sequence: list[list] = []
        tok = 0
        for (c0, s), (c1, _) in itertools.pairwise(trace):
            top = names[s[0] if isinstance(s, tuple) else s]
            stages[top] = stages.get(top, 0) + c1 - c0
            if isinstance(s, tuple):
                op = ops[s[2]]
                sequence.append([s[1], op, c0 - trace[0][0], c1 - trace[0][0]])
                if op == "tok":
                    tok += c1 - c0
                    continue
                layer = layers[s[1]]
                layer["cycles"] += c1 - c0
                layer["ops"][op] = layer["ops"].get(op, 0) + c1 - c0
        done = next(c for c, s in trace if not isinstance(s, tuple) and names[s] == "S_DONE")
        record = {"config": tb.params["config"], "mode": tb.params["mode"], "per_row": tb.params["per_row"],
                  "frames": 1, "task": tb.params["tasks"][0],
                  "parameters": tb.params["parameters"], "simulator": tb.params["sim"],
                  "start_to_done_cycles": done - trace[0][0], "stage_cycles": stages,
                  "layers": layers, "tokens_out_cycles": tok,
                  "op_sequence": sequence,  # [layer, op, start, done] (cycles from ap_start)
                  "stages_measured": "header fetch and check (S_HDR*, S_CHECK), patch-embedding tensor load (S_LD*), "
                                     "image fetch + dump (S_IMG*), patch embedding + embed dump (S_EMB*), every "
                                     "transformer layer op by op and the token write (S_LAYERS)"}
        TOP_CYCLES_FILE.parent.mkdir(parents=True, exist_ok=True)
        TOP_CYCLES_FILE.write_text(json.dumps(record, indent=1) + "\n")
        tb.log.info("cycles: start→done %d, per layer %s", record["start_to_done_cycles"],
                    [la["cycles"] for la in layers])
        assert sum(la["cycles"] for la in layers) + tok == stages["S_LAYERS"], "every layer cycle is attributed"


def _tb_params(vectors, config: str, variant: str, tmp_dir) -> tuple[dict, dict]:
    """Top parameters and what the testbench needs: payload and program files, layout, dump offset."""
    from m3vit.configs import get_config
    from m3vit.hw.gen import interface, program
    from m3vit.hw.gen.rtl_top_gen import LAYER_OPS, TOP_STATES, top_parameters
    from m3vit.quant.pack import read_pack
    from m3vit_host.layout import BufferLayout

    cfg = get_config(config)
    folder, mode = PACKS[variant]
    manifest = vectors.folder / folder / "model.json"
    pack = read_pack(manifest)
    words, dumps = program.build_program(pack, frames=FRAMES, dump=True)
    raw = (manifest.parent / pack.manifest["binary"]).read_bytes()
    (tmp_dir / "payload.bin").write_bytes(raw[pack.manifest["header_size"]:])
    np.save(tmp_dir / "program.npy", words)
    lay = BufferLayout.for_model(cfg, pack.spec, FRAMES)
    layout = {"image_shape": list(lay.image_shape), "image_format": [lay.image_format.bits, lay.image_format.frac],
              "token_shape": list(lay.token_shape), "token_format": [lay.token_format.bits, lay.token_format.frac],
              "scratch_bytes": max(lay.scratch_bytes, dumps.nbytes)}
    # 48-beat bursts (768 bytes) do not divide a 4 KiB page: the engines must split bursts at page boundaries
    # (AxiRam asserts on a burst that crosses one), besides cutting at MAX_BURST.
    params = {**top_parameters(cfg, mode), "MAX_BURST": 48}
    bundles = sorted({a.bundle for a in interface.ARGS if a.kind == "mem"})
    points = ["embed"] + [f"l{i}.{pt}" for i in range(cfg.depth) for pt in program.LAYER_POINTS
                          if pt != "scores"  # the scores stay on chip: the RTL does not dump them
                          and (pt not in DENSE_POINTS or not cfg.is_moe(i)) and (pt not in MOE_POINTS or cfg.is_moe(i))]
    fv = program.frame_dump_values(cfg)
    point_dumps = {p: [dumps.offsets[p], fv[p.split(".")[-1]]] for p in points}
    tasks = list(cfg.task_names)
    ref_dir = tmp_dir / "reference"
    from m3vit.quant.fixed import quantize

    images = quantize(np.load(vectors.folder / "dumps" / "images.npy"), pack.spec.activations["image"])
    np.save(tmp_dir / "images.npy", images)
    _write_reference(pack, manifest, images, tasks, ref_dir)
    tb = {"vectors": str(vectors.folder), "payload": str(tmp_dir / "payload.bin"),
          "program": str(tmp_dir / "program.npy"), "layout": layout, "bundles": bundles,
          "dumps": {p: [dumps.offsets[p], list(dumps.shapes[p])] for p in ("image", "embed")},
          "header_fields": list(program.HEADER_FIELDS), "tasks": tasks, "points": points,
          "point_dumps": point_dumps, "reference": str(ref_dir), "images": str(tmp_dir / "images.npy"),
          "ops": list(LAYER_OPS),
          "depth": cfg.depth, "num_tasks": len(cfg.tasks), "config": config, "mode": mode,
          "per_row": pack.spec.weight_scales == "per-row",
          # a version this build must refuse: per-row (3) for a mixed-width build, the mixed-width one (4) otherwise
          "wrong_version": program.PROGRAM_VERSION_PER_ROW if pack.spec.mode.mixed_weights
          else program.PROGRAM_VERSION_MIXED,
          "states": list(TOP_STATES)}
    return params, tb


MOE_POINTS = ("gate", "e1", "egelu", "e2", "moe")
DENSE_POINTS = ("fc1", "gelu", "fc2")


def _write_reference(pack, manifest: Path, images: np.ndarray, tasks: list[str], folder: Path) -> None:
    """The integer reference run frame by frame (the top runs one frame at a time, so its expert points are
    patch-reordered per frame), every point dumped: ``<task>.npz`` with ``f<frame>.<point>`` and ``tokens``; and
    the HLS C-simulation's tokens of the same frames (``csim_tokens``, its library built once under build/csim)."""
    from m3vit.hw.run import csim
    from m3vit.quant.reference import IntArith, run_backbone

    class FrameArith(IntArith):  # integer frames in, integer tokens out (the accelerator's boundaries)
        def input(self, name, x):
            return self._rec(name, np.asarray(x, dtype=np.int64))

        def output(self, x, name):
            return x

    folder.mkdir(parents=True, exist_ok=True)
    cfg = pack.cfg
    hls = csim.cached(cfg, pack.spec.mode.name)
    hls.load_pack(manifest)
    for task in tasks:
        out: dict[str, np.ndarray] = {}
        toks = []
        for f, frame in enumerate(images):
            ar = FrameArith(pack.iparams, pack.spec, cfg, dump=True, hw=pack.manifest["hardware"])
            toks.append(run_backbone(ar, cfg, frame[None], list(cfg.task_names).index(task))[0])
            # expert points are recorded once per active expert: their rows follow one another (patch reordering)
            out.update({f"f{f}.{k}": np.concatenate([np.asarray(x).reshape(-1) for x in v])
                        for k, v in ar.dumps.items()})
        hls.set_task(task)
        np.savez(folder / f"{task}.npz", tokens=np.stack(toks), csim_tokens=hls.run_quantized(images), **out)


def _run_top(vectors, tmp_path, tests: list[str], variant: str = "w8a8", task_index: int = 0) -> None:
    import sys

    from common import ROOT

    sys.path.insert(0, str(ROOT / "host"))
    from m3vit.hw.gen.rtl_top_gen import write_layers_include
    from m3vit.quant.pack import read_pack

    params, tb = _tb_params(vectors, "micro", variant, tmp_path)
    tb["task_index"] = task_index
    pack = read_pack(vectors.folder / PACKS[variant][0] / "model.json")
    layers_inc = write_layers_include(pack, BUILD / "include-layers" / f"{vectors.folder.name}-{variant}")
    run_unit("top", "m3vit_top", params, "verilator", tb, tests, top_includes=True, extra_includes=[layers_inc],
             opt=TOP_OPT)


def test_top(vectors, tmp_path):
    """Default run: W8/A8's default pack (per-row weight scales: pack and program version 3, a requantize shift per
    output channel loaded beside each block's biases), one frame of the last task, random AXI pauses, every point and
    the tokens bit-exact with the integer reference and the HLS C-simulation. (The last task's router shifts start
    inside a beat: task · E bytes into the stack at micro's 4 experts.)"""
    from m3vit.quant.pack import read_pack

    pack = read_pack(vectors.folder / PACKS["w8a8"][0] / "model.json")
    shifts = [v for k, v in pack.iparams.items() if k.endswith(".shift")]
    assert pack.spec.weight_scales == "per-row" and shifts, "the default W8/A8 pack has per-row weight scales"
    assert max(int(v.max() - v.min()) for v in shifts) > 0, "the channels' shifts differ"
    _run_top(vectors, tmp_path, ["frame_bit_exact"], task_index=len(vectors.meta["tasks"]) - 1)


@pytest.mark.slow
def test_top_rejects_and_cycles(vectors, tmp_path):
    """Bad programs / tasks are rejected without a write; the unpaused cycle record (same build); the RTL cycle
    model (m3vit.hw.estimate.rtl_perf), calibrated on this record, is within 10% of every measured layer."""
    from m3vit.configs import get_config
    from m3vit.hw.estimate import rtl_perf

    TOP_CYCLES_FILE.unlink(missing_ok=True)
    _run_top(vectors, tmp_path, ["bad_program_or_task_writes_nothing", "cycles"])
    record = json.loads(TOP_CYCLES_FILE.read_text())
    cfg = get_config(record["config"])
    rows = rtl_perf.compare(record, cfg, rtl_perf.fit(record, cfg))
    assert len(rows) == cfg.depth and all(r["ok"] for r in rows), f"model vs measured cycles per layer: {rows}"


@pytest.mark.slow
def test_top_all_tasks(vectors, tmp_path, request):
    """Opt-in (--top-all, or M3VIT_TOP_ALL=1; CI sets it): every task, alternating, switched by one register write."""
    if not request.config.getoption("--top-all"):
        pytest.skip("opt-in: every task of the RTL top runs with --top-all (or M3VIT_TOP_ALL=1), as CI does")
    _run_top(vectors, tmp_path, ["alternating_tasks"])


@pytest.mark.slow
def test_top_w16a16(vectors, tmp_path, request):
    """Opt-in (--top-all; CI sets it): the W16/A16 build runs one frame with random AXI pauses, bit-exact."""
    if not request.config.getoption("--top-all"):
        pytest.skip("opt-in: the W16/A16 RTL top runs with --top-all (or M3VIT_TOP_ALL=1), as CI does")
    _run_top(vectors, tmp_path, ["frame_bit_exact"], variant="w16a16")


@pytest.mark.slow
def test_top_per_tensor(vectors, tmp_path, request):
    """Opt-in (--top-all; CI sets it): a per-tensor W8/A8 pack (pack and program version 2: one requantize shift per
    op, no row-shift table) runs on the same build, one frame of the first task with random AXI pauses, every point
    and the tokens bit-exact with the integer reference and the HLS C-simulation."""
    if not request.config.getoption("--top-all"):
        pytest.skip("opt-in: the per-tensor RTL top runs with --top-all (or M3VIT_TOP_ALL=1), as CI does")
    from m3vit.hw.gen.program import PROGRAM_VERSION, program_version
    from m3vit.quant.pack import read_pack

    pack = read_pack(vectors.folder / PACKS["w8a8-tensor"][0] / "model.json")
    assert pack.spec.weight_scales == "per-tensor" and program_version(pack.spec) == PROGRAM_VERSION
    assert not [k for k in pack.iparams if k.endswith(".shift")], "no shift vectors in a per-tensor pack"
    _run_top(vectors, tmp_path, ["frame_bit_exact"], variant="w8a8-tensor")


@pytest.mark.slow
def test_top_mixed_w16a16e8(vectors, tmp_path, request):
    """Opt-in (--top-all; CI sets it): the mixed-width mode's build (W16/A16 with 8-bit per-row expert matrices, program
    version 4: the prefetcher reads the expert tiles in 16 beats and sign-extends them into the 16-bit lanes) runs
    one frame with random AXI pauses, every point bit-exact with the integer reference and the tokens with the HLS
    C-simulation."""
    if not request.config.getoption("--top-all"):
        pytest.skip("opt-in: the w16a16e8 RTL top runs with --top-all (or M3VIT_TOP_ALL=1), as CI does")
    from m3vit.hw.gen.program import PROGRAM_VERSION_MIXED, program_version
    from m3vit.quant.pack import read_pack

    pack = read_pack(vectors.folder / PACKS["w16a16e8"][0] / "model.json")
    assert program_version(pack.spec) == PROGRAM_VERSION_MIXED
    experts = [v for k, v in pack.iparams.items() if k.endswith((".e1.w", ".e2.w"))]
    assert experts and all(int(abs(v).max()) < 128 for v in experts), "8-bit expert matrices"
    _run_top(vectors, tmp_path, ["frame_bit_exact", "bad_program_or_task_writes_nothing"], variant="w16a16e8")


@pytest.mark.slow
def test_top_w8a16(vectors, tmp_path, request):
    """Opt-in (--top-all; CI sets it): the w8a16 build (8-bit per-row weights with GPTQ rounding, 16-bit activations:
    8-bit weight tiles into the MAC array's 16-bit activation lanes, program version 3) runs one frame with random AXI
    pauses, every point bit-exact with the integer reference and the tokens with the HLS C-simulation."""
    if not request.config.getoption("--top-all"):
        pytest.skip("opt-in: the w8a16 RTL top runs with --top-all (or M3VIT_TOP_ALL=1), as CI does")
    from m3vit.hw.gen.program import PROGRAM_VERSION_PER_ROW, program_version
    from m3vit.quant.pack import read_pack

    pack = read_pack(vectors.folder / PACKS["w8a16"][0] / "model.json")
    assert program_version(pack.spec) == PROGRAM_VERSION_PER_ROW and pack.spec.weight_rounding == "gptq"
    weights = [v for k, v in pack.iparams.items() if k.endswith(".w")]
    assert all(int(abs(v).max()) < 128 for v in weights), "8-bit weights"
    assert pack.spec.activations["l0.ln1"].bits == 16, "16-bit activations"
    _run_top(vectors, tmp_path, ["frame_bit_exact"], variant="w8a16")
