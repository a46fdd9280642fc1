"""The RTL top's testbench, as a library: ``TopTB`` (cocotbext-axi DDR behind every m_axi bundle, the host
runtime's own driver on the control slave, random AXI pauses), the reference it is checked against, and the
parameters of a build. Used by the cocotb tests of ``test_top.py`` and by the host runtime's ``rtlsim`` backend
(``rtlsim.py`` / ``rtlsim_tb.py``); it holds no test itself.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from pathlib import Path

import numpy as np
from common import BUILD, TB, drive_pauses, pause_runs, update_json

TOP_CYCLES_FILE = BUILD / "top_cycles.json"  # {config: {mode: record}}: one measured frame per config and mode
FRAMES = 2  # the device batch: both reference frames in one ap_start
TOP_PUBLIC = Path(__file__).with_name("top_public.vlt")  # what the bench reads (build_unit's `public`): top_public()
TOP_OPT = "-O2"  # C++ optimisation of the top's model: its eval, not Python, bounds the simulation speed
POLL_CYCLES = 2000  # simulated cycles between the driver's register reads (its polling interval)
# DDR read latency of the bench's memory: cycles from a read address accepted (AR handshake) to its first data beat
# (R handshake) when nothing else waits; the default is the figure the cycle record is measured at, the stress tests
# run at STRESS_READ_LATENCY. Each request counts from its own acceptance: up to READS_OUTSTANDING requests wait at
# once (pipelined, as a DDR controller's queue), their bursts come back in order, back to back.
READ_LATENCY = 40
STRESS_READ_LATENCY = 200
READS_OUTSTANDING = 16
# the micro vectors' packs (sim/vectors.py): variant → (pack folder, precision mode)
# (w8a8: the default, per-row weight scales; w8a8-tensor: per-tensor, the same model)
PACKS = {"w8a8": ("pack", "w8a8"), "w16a16": ("pack16", "w16a16"), "w8a8-tensor": ("pack_tensor", "w8a8"),
         "w16a16e8": ("pack_mixed", "w16a16e8"), "w8a16": ("pack_w8a16", "w8a16")}


class DelayedReads:
    """A read latency in front of a cocotbext-axi ``AxiRam``'s read path: each accepted read address is time-stamped
    at its handshake, and the RAM's read process (which turns one address into its data beats, one request after
    the other) takes it only ``latency - 1.5`` clock periods after that stamp, so its first beat is offered on the
    edge ``latency - 1`` cycles after the address and taken ``latency`` cycles after it with RREADY high. Requests
    wait side by side: while one is delayed the AR channel keeps accepting (up to ``outstanding`` queued), and a
    request whose time has passed goes out right after the burst before it. ``latency`` may change between runs
    (attribute); below 2 cycles the RAM's own timing applies (first beat 2 cycles after the address)."""

    def __init__(self, ram, clock_ns: float, latency: int, outstanding: int = READS_OUTSTANDING) -> None:
        ar = ram.read_if.ar_channel
        ar.queue_occupancy_limit = outstanding
        self.latency, self.outstanding = latency, outstanding
        self.period_ps = round(clock_ns * 1000)
        self._accepted: deque[int] = deque()  # handshake times (ps) of the requests in the AR queue, in order
        put, clear, self._recv = ar.queue.put_nowait, ar.clear, ar.recv

        def stamped(obj) -> None:  # the AR sink queues a request at its handshake edge
            from cocotb.utils import get_sim_time

            self._accepted.append(int(get_sim_time("ps")))
            put(obj)

        def cleared() -> None:  # reset empties the queue: its stamps go too
            self._accepted.clear()
            clear()

        ar.queue.put_nowait, ar.clear, ar.recv = stamped, cleared, self.recv

    async def recv(self):
        from cocotb.triggers import Timer
        from cocotb.utils import get_sim_time

        obj = await self._recv()
        due = self._accepted.popleft() + round((self.latency - 1.5) * self.period_ps)
        wait = due - int(get_sim_time("ps"))
        if self.latency >= 2 and wait > 0:
            await Timer(wait, "ps")
        return obj


class TopTB(TB):
    CLOCK_IMPL = "gpi"

    def __init__(self, dut, pauses: bool, read_latency: int | None = None) -> None:
        super().__init__(dut)
        from axi_host import AxiLiteIP, RamBoard, axil_master, axil_pause_runs, host_package
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
        # the read latency: the runner's (tb parameter `read_latency`) unless the test names one
        latency = self.params.get("read_latency", READ_LATENCY) if read_latency is None else read_latency
        self.reads = {b: DelayedReads(ram, self.CLOCK_NS, latency) for b, ram in self.rams.items()}
        self.axil = axil_master(dut)
        seed = self.rng.randrange(1 << 20)
        if pauses:
            # pauses in runs (``pause_runs``), not a fresh coin each cycle: a frame is 10^5–10^6 cycles, and one
            # coroutine per channel waking every cycle cost most of the simulation's time; one drives them all
            runs = axil_pause_runs(self.axil, seed)
            for i, ram in enumerate(self.rams.values()):
                chans = (ram.write_if.aw_channel, ram.write_if.w_channel, ram.write_if.b_channel,
                         ram.read_if.ar_channel, ram.read_if.r_channel)
                runs += [(ch, pause_runs(seed * 7 + i * 10 + j, 0.3)) for j, ch in enumerate(chans)]
            drive_pauses(runs, dut.ap_clk)
        self.board = RamBoard(self.mem)
        self.ip = AxiLiteIP(self.axil, dut.ap_clk, read_gap=POLL_CYCLES)
        self.states: list[tuple[int, int]] = []  # (cycle, sequencer state) at every change (cycles test)
        # the RTL top itself: the DUT, or the instance inside a wrapper under Vitis' names; None for a Vitis export,
        # whose internals the bench cannot name (its checks then rest on the ports: dumps and tokens in DDR)
        self.core = self._core(dut)

    def set_read_latency(self, cycles: int) -> None:
        for reads in self.reads.values():
            reads.latency = cycles

    def watch_read_latency(self, bundle: str) -> list[int]:
        """Cycles from each read address accepted on ``bundle`` to its first data beat (R handshake), from now on."""
        import cocotb

        dut, out, pending = self.dut, [], deque()
        pre = f"m_axi_{bundle}_"
        arv, arr, rv, rr, rl = (getattr(dut, pre + n) for n in ("arvalid", "arready", "rvalid", "rready", "rlast"))

        async def run() -> None:
            first = True  # the next R beat opens a burst
            while True:
                await self._rising
                if arv.value == 1 and arr.value == 1:
                    pending.append(self.cycle)
                if rv.value == 1 and rr.value == 1:
                    if first:
                        out.append(self.cycle - pending.popleft())
                    first = rl.value == 1

        cocotb.start_soon(run())
        return out

    @staticmethod
    def _core(dut):
        if dut._name == "m3vit_top":
            return dut
        try:
            return dut.u_top
        except AttributeError:
            return None

    async def trace_states(self) -> None:
        """Record (cycle, state) at every change of the sequencer's state (and in S_LAYERS of the layer and op):
        woken by the registers' value changes, not every clock (a whole frame is millions of cycles), each change
        stamped with the cycle of the edge that made it."""
        from cocotb.triggers import First, ReadOnly

        lay = self.core.g_layers.u_layers
        watched = (self.core.state, lay.layer, lay.step)
        layers = self.params["states"].index("S_LAYERS")
        last = None
        while True:
            await First(*(sig.value_change for sig in watched))
            await ReadOnly()
            state = int(self.core.state.value)
            if state == layers:
                state = (state, int(lay.layer.value), int(lay.step.value))
            if state != last:
                self.states.append((self.cycle, state))
                if isinstance(state, tuple):
                    self.log.info("cycle %d: layer %d step %d", self.cycle, state[1], state[2])
                last = state

    async def start(self, trace: bool = False) -> None:
        import cocotb

        await self.reset()
        if trace:
            cocotb.start_soon(self.trace_states())

    def unchanged(self, driver, name: str, want: bytes) -> bool:
        """Whether buffer ``name`` still holds ``want`` in DDR (the top writes nothing but scratch)."""
        buf = driver.buffers[name]
        return bytes(self.mem.read(int(buf.device_address), len(want))) == want

    def driver(self, frames: int | None = None):
        from m3vit.quant.fixed import QFormat
        from m3vit_host.driver import AcceleratorDriver
        from m3vit_host.layout import BufferLayout

        lay = self.params["layout"]
        frames = self.params.get("frames", FRAMES) if frames is None else frames
        layout = BufferLayout(frames=frames, image_shape=tuple(lay["image_shape"]),
                              image_format=QFormat(*lay["image_format"]), token_shape=tuple(lay["token_shape"]),
                              token_format=QFormat(*lay["token_format"]), scratch_bytes=lay["scratch_bytes"])
        # wall-clock bound of one device batch: generous, as a loaded machine (CI runs two workers) may take minutes
        # per simulated frame; the cocotb tests' own simulated-time timeouts catch a top that hangs
        return AcceleratorDriver(self.ip, self.board.allocate, layout, timeout_s=3600.0, poll_interval_s=0.0,
                                 source="the RTL top")

    def inputs(self, program: str = "program") -> tuple[bytes, bytes, np.ndarray]:
        """The pack payload, the words of ``program`` (``program``: every dump of a batch; ``program_no_dump``: none;
        ``program_dump_first``: the first frame's alone) and the reference frames quantized to the pack's image
        format."""
        payload = Path(self.params["payload"]).read_bytes()
        program = np.load(self.params[program]).astype("<u4").tobytes()
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

    def expert_rows(self, task: str, frame: int) -> dict[str, list[int]]:
        """Reference frame ``frame``'s route: per MoE layer, its active experts' queue lengths in the order the
        dispatcher runs them (ascending expert), from the layer's dumped gate logits and the contract's top-k (the
        cycle model replays the frame on them: rtl_perf's ``expert_rows``)."""
        from m3vit.configs import get_config
        from m3vit.quant import intops

        cfg = get_config(self.params["config"])
        ref = self.reference(task)
        rows = {}
        for i in range(cfg.depth):
            if cfg.is_moe(i):
                logits = ref[f"f{frame}.l{i}.gate"].reshape(cfg.num_tokens, cfg.num_experts)
                counts = np.bincount(intops.topk_lowest_index_ties(logits, cfg.top_k).ravel(),
                                     minlength=cfg.num_experts)
                rows[str(i)] = [int(n) for n in counts if n]
        return rows

    def check_points(self, driver, task: str, frames: list[int], layout: str = "point_dumps") -> None:
        """Compare every point the top leaves in scratch (slot i: reference frame frames[i]) with the per-frame
        integer reference, in forward order: the assertion names the first frame, point and flat index that differ.
        ``layout``: the dump offsets of the program run (``first_point_dumps``: the program dumping one frame)."""
        ref = self.reference(task)
        scratch = self.scratch(driver)
        for slot, f in enumerate(frames):
            for point in self.params["points"]:
                off, per_frame = self.params[layout][point]
                got = np.frombuffer(scratch, dtype="<i4", count=per_frame, offset=off + slot * per_frame * 4)
                want = ref[f"f{f}.{point}"].reshape(-1)
                diff = first_difference(got.astype(np.int64), want)
                assert not diff, f"task {task}, frame {f}, point {point}: {diff}"

    def status(self) -> dict[str, int]:
        """The top's error flags (none seen: a Vitis export has no such ports, its runs are judged by their data)."""
        if self.core is None:
            return {"program_error": 0, "axi_error": 0}
        return {"program_error": int(self.core.program_error.value), "axi_error": int(self.core.axi_error.value)}


def top_public(top: str = "m3vit_top") -> Path:
    """The Verilator control file of what the bench reaches (``TOP_PUBLIC``: the RTL top's ports and registers, the
    layers' counters) plus, for another DUT module — the Vitis-names wrapper, a Vitis export — that module's ports
    and registers (a control file may name modules a build lacks: they are ignored)."""
    if top == "m3vit_top":
        return TOP_PUBLIC
    text = TOP_PUBLIC.read_text() + f'public_flat_rw -module "{top}" -var "*"\n'
    path = BUILD / "include-top" / f"public-{top}.vlt"
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # pytest workers may write it at once
        tmp.write_text(text)
        tmp.replace(path)
    return path


def update_top_cycles(config: str, mode: str, record: dict | None) -> None:
    """Put ``record`` (a measured frame) into ``TOP_CYCLES_FILE`` under ``[config][mode]``, or drop that entry
    (``None``); the other configs' and modes' records stay."""
    def change(data: dict) -> dict:
        if "config" in data:  # a record of the old, flat form (micro's alone): replaced
            data = {}
        if record is None:
            data.get(config, {}).pop(mode, None)
        else:
            data.setdefault(config, {})[mode] = record
        return data

    update_json(TOP_CYCLES_FILE, change)


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


def tb_params(vectors, config: str, variant: str, tmp_dir, frames: int = FRAMES,
              ref_tasks: list[str] | None = None) -> tuple[dict, dict]:
    """Top parameters and what the testbench needs: payload and program files (a device batch of ``frames``
    frames), layout, dump offsets, and the reference of ``ref_tasks`` (default: every task)."""
    from m3vit.configs import get_config
    from m3vit.hw.gen import interface, program
    from m3vit.hw.gen.rtl_top_gen import LAYER_OPS, TOP_STATES, top_parameters
    from m3vit.quant.pack import read_pack
    from m3vit_host.layout import BufferLayout

    cfg = get_config(config)
    folder, mode = PACKS[variant]
    manifest = vectors.folder / folder / "model.json"
    pack = read_pack(manifest)
    words, dumps = program.build_program(pack, frames=frames, dump=True)
    raw = (manifest.parent / pack.manifest["binary"]).read_bytes()
    (tmp_dir / "payload.bin").write_bytes(raw[pack.manifest["header_size"]:])
    np.save(tmp_dir / "program.npy", words)
    # the same pack's program without dumps (the activations stay on chip; only the tokens leave), and one that
    # dumps the first frame of a batch alone (dump_frames 1: the frames after it run without dumps)
    np.save(tmp_dir / "program_no_dump.npy", program.build_program(pack, frames=frames, dump=False)[0])
    first_words, first_dumps = program.build_program(pack, frames=1, dump=True)
    np.save(tmp_dir / "program_dump_first.npy", first_words)
    lay = BufferLayout.for_model(cfg, pack.spec, frames)
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
    first_point_dumps = {p: [first_dumps.offsets[p], fv[p.split(".")[-1]]] for p in points}
    tasks = list(cfg.task_names)
    ref_dir = tmp_dir / "reference"
    from m3vit.quant.fixed import quantize

    images = quantize(np.load(vectors.folder / "dumps" / "images.npy")[:frames], pack.spec.activations["image"])
    np.save(tmp_dir / "images.npy", images)
    write_reference(pack, manifest, images, tasks if ref_tasks is None else ref_tasks, ref_dir)
    tb = {"vectors": str(vectors.folder), "payload": str(tmp_dir / "payload.bin"),
          "program": str(tmp_dir / "program.npy"), "program_no_dump": str(tmp_dir / "program_no_dump.npy"),
          "program_dump_first": str(tmp_dir / "program_dump_first.npy"), "first_point_dumps": first_point_dumps,
          "dump_first_bytes": first_dumps.nbytes,
          "layout": layout, "bundles": bundles,
          "dumps": {p: [dumps.offsets[p], list(dumps.shapes[p])] for p in ("image", "embed")},
          "header_fields": list(program.HEADER_FIELDS), "tasks": tasks, "points": points,
          "point_dumps": point_dumps, "reference": str(ref_dir), "images": str(tmp_dir / "images.npy"),
          "ops": list(LAYER_OPS),
          "depth": cfg.depth, "num_tasks": len(cfg.tasks), "config": config, "mode": mode, "frames": frames,
          "per_row": pack.spec.weight_scales == "per-row",
          # a version this build must refuse: per-row (3) for a mixed-width build, the mixed-width one (4) otherwise
          "wrong_version": program.PROGRAM_VERSION_PER_ROW if pack.spec.mode.mixed_weights
          else program.PROGRAM_VERSION_MIXED,
          "states": list(TOP_STATES)}
    return params, tb


MOE_POINTS = ("gate", "e1", "egelu", "e2", "moe")
DENSE_POINTS = ("fc1", "gelu", "fc2")


def write_reference(pack, manifest: Path, images: np.ndarray, tasks: list[str], folder: Path) -> None:
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


