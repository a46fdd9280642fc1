"""Accelerator top (rtl/m3vit_top.sv) running whole micro frames, driven by the host runtime's own driver, with DDR
modelled by cocotbext-axi ``AxiRam`` (one per m_axi bundle, one shared memory) with a read latency (cycles from a read
address to its first beat: ``READ_LATENCY`` = 40 for the cycle record, ``STRESS_READ_LATENCY`` = 200 in the bit-exact
runs) and random pauses / back-pressure on every AXI channel (the testbench: ``top_tb.py``).

The buffers lie where the driver's allocator puts them (the simulated ZCU104's DDR above 4 GiB); the weight pack
and the layer program are the micro model's (``vectors.py``), the program built by ``m3vit.hw.gen.program``. Every
activation point the top leaves in scratch and the output tokens must equal the integer reference's bit for bit,
and the tokens the HLS C-simulation's; one run per precision mode / weight-scale variant, every task, bad programs,
and the cycle record (``build/sim/top_cycles.json``).
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

try:
    import cocotb
except ImportError:  # pytest still collects the runner below and skips with the reason
    cocotb = None

from common import BUILD, run_unit
from top_tb import (
    FRAMES,
    PACKS,
    READ_LATENCY,
    STRESS_READ_LATENCY,
    TOP_CYCLES_FILE,
    TOP_OPT,
    TopTB,
    first_difference,
    run_driver,
    tb_params,
    top_public,
    update_top_cycles,
)

if cocotb is not None:
    async def run_checked(tb, driver, task_index: int, frames: list[int]) -> None:
        """set_task (one register write) → run the reference frames ``frames`` as one device batch → every point
        the top leaves in scratch, and the output tokens, equal the integer reference's."""
        images = tb.inputs()[2]
        await run_driver(driver.set_task, task_index)
        tokens = await run_driver(driver.run, images[frames])
        assert tb.status() == {"program_error": 0, "axi_error": 0}, tb.status()
        if tb.core is not None:
            assert int(tb.core.task_id.value) == task_index, "the task register reached the sequencer"
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

    @cocotb.test(timeout_time=3000, timeout_unit="ms")
    async def every_task(dut):
        """One frame of every task but the first (the last first, then the others in order; the first task's frame
        is ``test_top_variant``'s, in make test), each switched by one register write (no reload), with the runner's
        read latency and random AXI pauses: all bit-exact."""
        tb = TopTB(dut, pauses=True)
        await tb.start()
        payload, program, _ = tb.inputs()
        driver = tb.driver()
        await run_driver(driver.load, payload, program)
        n = len(tb.params["tasks"])
        for i, t in enumerate([n - 1, *range(1, n - 1)]):
            await run_checked(tb, driver, t, [i % FRAMES])

    async def run_without_dumps(tb, driver, task_index: int, frames: list[int]) -> None:
        """A program without dumps: the frames run with their activations on chip; the tokens are the integer
        reference's and the HLS C-simulation's, and scratch is never written (nor read: the top has no scratch
        reader)."""
        images = tb.inputs()[2]
        await run_driver(driver.set_task, task_index)
        tokens = await run_driver(driver.run, images[frames])
        assert tb.status() == {"program_error": 0, "axi_error": 0}, tb.status()
        task = tb.params["tasks"][task_index]
        diff = first_difference(np.asarray(tokens, dtype=np.int64), tb.reference_tokens(task)[frames])
        assert not diff, f"output tokens without dumps, task {task}, frames {frames}: {diff}"
        diff = first_difference(np.asarray(tokens, dtype=np.int64), tb.csim_tokens(task)[frames])
        assert not diff, f"output tokens without dumps vs the HLS C-simulation, task {task}, frames {frames}: {diff}"
        assert not np.frombuffer(tb.scratch(driver), dtype=np.uint8).any(), "a run without dumps wrote scratch"

    @cocotb.test(timeout_time=800, timeout_unit="ms")
    async def frame_without_dumps(dut):
        """A program built without dumps (``build_program(pack, frames, dump=False)``) runs a batch of every
        reference frame with random AXI pauses: the tokens bit-exact, scratch untouched. Then a program that dumps
        one frame (dump_frames 1) runs the same batch: the first frame's points in scratch and every frame's
        tokens bit-exact, nothing written past the first frame's dumps."""
        tb = TopTB(dut, pauses=True)
        await tb.start()
        payload, program, images = tb.inputs("program_no_dump")
        driver = tb.driver()
        await run_driver(driver.load, payload, program)
        task_index = tb.params.get("task_index", 0)
        frames = list(range(FRAMES))
        await run_without_dumps(tb, driver, task_index, frames)
        _, program, _ = tb.inputs("program_dump_first")
        await run_driver(driver.load, payload, program)
        scratch = driver.buffers["scratch"]
        scratch[:] = 0
        scratch.flush()
        await run_driver(driver.set_task, task_index)
        tokens = await run_driver(driver.run, images[frames])
        assert tb.status() == {"program_error": 0, "axi_error": 0}, tb.status()
        task = tb.params["tasks"][task_index]
        tb.check_points(driver, task, [0], layout="first_point_dumps")
        diff = first_difference(np.asarray(tokens, dtype=np.int64), tb.reference_tokens(task)[frames])
        assert not diff, f"output tokens, the first frame dumped, task {task}: {diff}"
        written = np.flatnonzero(np.frombuffer(tb.scratch(driver), dtype=np.uint8))
        assert written.size and written[-1] < tb.params["dump_first_bytes"], "a frame past dump_frames was dumped"

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
        assert not np.asarray(driver.buffers["tokens"]).any(), "a rejected run wrote tokens"
        assert await tb.axil.read_dword(interface.REG_CTRL) & interface.CTRL_AP_IDLE

    def frame_cycles(trace: list, names: list[str]) -> int:
        """Cycles from ap_start (the first state change of the run) to S_DONE in a state trace."""
        return next(c for c, s in trace if not isinstance(s, tuple) and names[s] == "S_DONE") - trace[0][0]

    def attribute(trace: list, names: list[str], ops: list[str]) -> tuple[dict, list, list, int]:
        """Cycles of a frame's state trace per top-level stage, per layer and op (from the layers' step register),
        the op sequence ([layer, op, start, done] from ap_start) and the token write's cycles."""
        stages: dict[str, int] = {}
        layers: list[dict] = [{"layer": i, "cycles": 0, "ops": {}} for i in range(max(s[1] for _, s in trace
                                                                                      if isinstance(s, tuple)) + 1)]
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
        return stages, layers, sequence, tok

    @cocotb.test(timeout_time=1500, timeout_unit="ms")
    async def cycles(dut):
        """One frame without pauses at the default read latency (bit-exact like the others): cycles from ap_start to
        ap_done, per top-level stage, per layer and per op of each layer (start/done of every op from the layers' step
        register), and the read latency seen on the ports; then the same frame at the stress read latency (its
        start-to-done cycles); then the frame again at the default latency from the program without dumps (tokens
        bit-exact, scratch untouched; its cycles per stage and layer) → build/sim/top_cycles.json."""
        tb = TopTB(dut, pauses=False, read_latency=READ_LATENCY)
        await tb.start(trace=True)
        payload, program, _ = tb.inputs()
        driver = tb.driver()
        await run_driver(driver.load, payload, program)
        # (scratch is never read: the activations are on chip; the image comes over gmem_a, the weights over gmem_w1)
        seen = {b: tb.watch_read_latency(b) for b in ("gmem_a", "gmem_w1")}
        first = len(tb.states)
        await run_checked(tb, driver, 0, [0])
        names, ops = tb.params["states"], tb.params["ops"]
        trace = tb.states[first:]
        latency = {b: {"bursts": len(v), "min": min(v), "max": max(v)} for b, v in seen.items()}
        for b, v in latency.items():  # RREADY low (the top's back-pressure) or a burst ahead only add cycles
            assert v["bursts"] and v["min"] == READ_LATENCY, f"{b}: read latency {v}, want {READ_LATENCY} at least"
        stages, layers, sequence, tok = attribute(trace, names, ops)
        assert len(layers) == tb.params["depth"], "every layer ran"
        # the same frame again at the stress latency (no pauses: its cycles are the latency's alone)
        tb.set_read_latency(STRESS_READ_LATENCY)
        first = len(tb.states)
        await run_checked(tb, driver, 0, [0])
        stress = frame_cycles(tb.states[first:], names)
        # and at the default latency from the program without dumps (scratch cleared: nothing may be written)
        tb.set_read_latency(READ_LATENCY)
        _, program_nd, _ = tb.inputs("program_no_dump")
        await run_driver(driver.load, payload, program_nd)
        scratch = driver.buffers["scratch"]
        scratch[:] = 0
        scratch.flush()
        first = len(tb.states)
        await run_without_dumps(tb, driver, 0, [0])
        trace_nd = tb.states[first:]
        stages_nd, layers_nd, sequence_nd, tok_nd = attribute(trace_nd, names, ops)
        route = tb.expert_rows(tb.params["tasks"][0], 0)  # the frame's route (both runs): rows per active expert
        no_dump = {"start_to_done_cycles": frame_cycles(trace_nd, names), "stage_cycles": stages_nd,
                   "layers": layers_nd, "tokens_out_cycles": tok_nd, "op_sequence": sequence_nd,
                   "expert_rows": route}
        record = {"config": tb.params["config"], "mode": tb.params["mode"], "per_row": tb.params["per_row"],
                  "frames": 1, "task": tb.params["tasks"][0],
                  "parameters": tb.params["parameters"], "simulator": tb.params["sim"],
                  "read_latency_cycles": READ_LATENCY, "reads_outstanding": tb.reads["gmem_s"].outstanding,
                  "read_latency_seen": latency,
                  "start_to_done_cycles": frame_cycles(trace, names), "stage_cycles": stages,
                  "layers": layers, "tokens_out_cycles": tok,
                  "op_sequence": sequence,  # [layer, op, start, done] (cycles from ap_start)
                  "expert_rows": route,
                  "stages_measured": "header fetch and check (S_HDR*, S_CHECK), patch-embedding tensor load (S_LD*), "
                                     "image fetch + dump (S_IMG*), patch embedding + embed dump (S_EMB*), every "
                                     "transformer layer op by op and the token write (S_LAYERS)",
                  "by_read_latency": {str(READ_LATENCY): frame_cycles(trace, names),
                                      str(STRESS_READ_LATENCY): stress},
                  # the same frame from a program without dumps (activations on chip, only the tokens written)
                  "no_dump": no_dump}
        update_top_cycles(tb.params["config"], tb.params["mode"], record)
        tb.log.info("cycles: start→done %d (read latency %d), %d (read latency %d), per layer %s",
                    record["start_to_done_cycles"], READ_LATENCY, stress, STRESS_READ_LATENCY,
                    [la["cycles"] for la in layers])
        assert sum(la["cycles"] for la in layers) + tok == stages["S_LAYERS"], "every layer cycle is attributed"
        assert stress > record["start_to_done_cycles"], "a longer read latency costs cycles"
        tb.log.info("cycles without dumps: start→done %d, per layer %s", no_dump["start_to_done_cycles"],
                    [la["cycles"] for la in layers_nd])
        assert no_dump["start_to_done_cycles"] < record["start_to_done_cycles"], "the dump writes cost cycles"


if cocotb is not None:
    @cocotb.test(timeout_time=1000, timeout_unit="ms")
    async def whole_frame(dut):
        """A device batch of the vectors' two frames, without pauses at the default read latency, from the program
        that dumps the first frame alone: frame 0's every point in scratch (bit-exact with the integer reference)
        and both frames' tokens (bit-exact with the integer reference and the HLS C-simulation), nothing dumped
        past frame 0. Frame 0 is a frame with every dump, frame 1 a deployed frame (no dump) whose weights the
        prefetcher may fetch while frame 0 ends. Cycles of each frame per stage, layer and op, of the batch, and
        the seconds the batch took to simulate → ``build/sim/top_cycles.json`` under [config][mode]."""
        import time

        tb = TopTB(dut, pauses=False, read_latency=READ_LATENCY)
        await tb.start(trace=True)
        payload, program, images = tb.inputs("program_dump_first")
        driver = tb.driver(frames=2)
        await run_driver(driver.load, payload, program)
        names, ops = tb.params["states"], tb.params["ops"]
        task_index = tb.params.get("task_index", 0)
        task = tb.params["tasks"][task_index]
        await run_driver(driver.set_task, task_index)
        first, t0 = len(tb.states), time.monotonic()
        tokens = await run_driver(driver.run, images[:2])
        seconds = time.monotonic() - t0
        assert tb.status() == {"program_error": 0, "axi_error": 0}, tb.status()
        tb.check_points(driver, task, [0], layout="first_point_dumps")
        for name, want in (("integer reference", tb.reference_tokens(task)), ("C-simulation", tb.csim_tokens(task))):
            diff = first_difference(np.asarray(tokens, dtype=np.int64), want[:2])
            assert not diff, f"output tokens vs the {name}, task {task}: {diff}"
        written = np.flatnonzero(np.frombuffer(tb.scratch(driver), dtype=np.uint8))
        assert written.size and written[-1] < tb.params["dump_first_bytes"], "a frame past dump_frames was dumped"

        trace = tb.states[first:]
        s_frame = names.index("S_FRAME")
        starts = [k for k, (_, st) in enumerate(trace) if st == s_frame]
        # S_FRAME opens each frame and, after the last, sends the sequencer to S_DONE
        assert len(starts) == 3, f"two frames ran: {len(starts)} S_FRAME, want 3"
        done = frame_cycles(trace, names) + trace[0][0]

        def measured(part: list, end: int, frame: int) -> dict:
            stages, layers, sequence, tok = attribute(part, names, ops)
            assert len(layers) == tb.params["depth"], "every layer ran"
            assert sum(la["cycles"] for la in layers) + tok == stages["S_LAYERS"], "every layer cycle is attributed"
            cycles = end - part[0][0]
            base = part[0][0]
            return {"start_to_done_cycles": cycles, "ms_at_300MHz": round(cycles / 300e3, 3), "stage_cycles": stages,
                    "layers": layers, "tokens_out_cycles": tok,
                    "op_sequence": [[la, op, a - base, b - base] for la, op, a, b in sequence],
                    "expert_rows": tb.expert_rows(task, frame)}  # the frame's route: rows per active expert

        # frame 0: from ap_start (header, embedding tensors) to frame 1's S_FRAME; frame 1: from there to ap_done
        dumped = measured(trace[:starts[1] + 1], trace[starts[1]][0], 0)
        deployed = measured(trace[starts[1]:], done, 1)
        batch = done - trace[0][0]
        tb.log.info("batch of 2: %d cycles (frame 0, every dump: %d; frame 1, no dump: %d), %.0f s simulated",
                    batch, dumped["start_to_done_cycles"], deployed["start_to_done_cycles"], seconds)
        record = {"config": tb.params["config"], "mode": tb.params["mode"], "per_row": tb.params["per_row"],
                  "frames": 1, "task": task, "parameters": tb.params["parameters"],
                  "simulator": tb.params["sim"], "read_latency_cycles": READ_LATENCY,
                  "reads_outstanding": tb.reads["gmem_s"].outstanding, "vectors": tb.params["vectors_meta"],
                  "measured": "one device batch of two frames in Verilator, no pauses: the top level is frame 0 "
                              "(from ap_start, every dump written, bit-exact at every point); `no_dump` is frame 1 "
                              "(from its S_FRAME to ap_done, nothing dumped); `batch2` the batch",
                  **dumped, "no_dump": deployed,
                  "batch2": {"frames": 2, "start_to_done_cycles": batch, "ms_at_300MHz": round(batch / 300e3, 3),
                             "simulation_seconds": round(seconds, 1)}}
        update_top_cycles(tb.params["config"], tb.params["mode"], record)


def _run_top(vectors, tmp_path, tests: list[str], variant: str = "w8a8", task_index: int = 0,
             top: str = "m3vit_top", sources=None, parameters: bool = True,
             read_latency: int = STRESS_READ_LATENCY, config: str = "micro", frames: int = FRAMES,
             ref_tasks: list[str] | None = None) -> None:
    """Build (cached per parameter set) and run the cocotb ``tests`` on ``variant``'s pack of ``vectors`` (of
    ``config``: a batch of ``frames``, the reference of ``ref_tasks``, default every task); the DDR model's read
    latency is the stress figure unless named (the cycle record sets its own)."""
    import sys

    from common import ROOT

    sys.path.insert(0, str(ROOT / "host"))
    from m3vit.hw.gen.rtl_top_gen import write_layers_include
    from m3vit.quant.pack import read_pack

    params, tb = tb_params(vectors, config, variant, tmp_path, frames=frames, ref_tasks=ref_tasks)
    tb["task_index"] = task_index
    tb["vectors_meta"] = vectors.meta
    tb["read_latency"] = read_latency
    pack = read_pack(vectors.folder / PACKS[variant][0] / "model.json")
    layers_inc = write_layers_include(pack, BUILD / "include-layers" / f"{vectors.folder.name}-{variant}")
    run_unit("top", top, params if parameters else {}, "verilator", tb, tests, top_includes=True,
             extra_includes=[layers_inc], opt=TOP_OPT, sources=sources, public=top_public(top))


def test_top(vectors, tmp_path):
    """Default run, under stress: W8/A8's default pack (per-row weight scales: pack and program version 3, a
    requantize shift per output channel loaded beside each block's biases), one frame of the last task, DDR read
    latency 200 cycles and random pauses on every AXI channel, every point and the tokens bit-exact with the integer
    reference and the HLS C-simulation. (The last task's router shifts start
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
    model (m3vit.hw.estimate.rtl_perf), calibrated on this record — the frame with dumps and the same frame without
    — is within 10% of every measured layer of each and 5 % of the frame."""
    update_top_cycles("micro", "w8a8", None)  # no stale record can pass for this run's
    _run_top(vectors, tmp_path, ["bad_program_or_task_writes_nothing", "cycles"], read_latency=READ_LATENCY)
    _check_cycle_model(json.loads(TOP_CYCLES_FILE.read_text())["micro"]["w8a8"])


@pytest.mark.slow
def test_top_under_vitis_names(vectors, tmp_path, request):
    """The bench binds by the names Vitis HLS gives its export (module ``m3vit_accel``, ``ap_clk``, ``ap_rst_n``,
    ``interrupt``, ``s_axi_control_*``, ``m_axi_<bundle>_*`` with upper-case channel signals): one micro W8/A8 frame
    with random AXI pauses, bit-exact. By default (read latency 40) on the generated wrapper that presents the RTL
    top under those names; ``--top NAME`` with ``--rtl-dir <export>/hdl/verilog`` runs the same frame on a Vitis export
    (``make rtl-sim-top RTL_DIR=... TOP=m3vit_accel``, at the stress read latency 200; its parameters are fixed at
    synthesis, none are passed)."""
    from common import unit_sources

    from m3vit.configs import get_config
    from m3vit.hw.gen import vitis_names

    top = request.config.getoption("--top")
    if top:
        _run_top(vectors, tmp_path, ["frame_bit_exact"], top=top, parameters=False)
        return
    wrapper = vitis_names.write_wrapper(get_config("micro"), "w8a8", BUILD / "vitis-names" / "micro-w8a8")
    text = wrapper.read_text()
    assert "module m3vit_accel" in text and "m_axi_gmem_w0_ARVALID" in text and "s_axi_control_AWADDR" in text
    # the wrapper is the RTL top that test_top runs at the stress latency: here the names are under test, so the
    # frame runs at the default read latency (half the cycles)
    _run_top(vectors, tmp_path, ["frame_bit_exact"], top=vitis_names.WRAPPER_NAME,
             sources=[wrapper, *unit_sources("m3vit_top")], read_latency=READ_LATENCY)


@pytest.mark.long(minutes=2)  # micro frames through the top at read latency 200 (make test-long, which CI runs)
def test_top_all_tasks(vectors, tmp_path):
    """W8/A8 at read latency 200 with random AXI pauses, every task: one frame of each task but the first (the first
    task's is ``test_top``'s, in make test), each switched by one register write (no reload), each bit-exact. (A
    batch of two frames: ``test_top_without_dumps``, and the m3vit-tiny frame's batch.)"""
    _run_top(vectors, tmp_path, ["every_task"])


def _check_w16a16(pack) -> None:
    assert pack.spec.activations["l0.ln1"].bits == 16 and pack.spec.weights["l0.q.w"].bits == 16


def _check_per_tensor(pack) -> None:
    """Pack and program version 2: one requantize shift per op, no row-shift table."""
    from m3vit.hw.gen.program import PROGRAM_VERSION, program_version

    assert pack.spec.weight_scales == "per-tensor" and program_version(pack.spec) == PROGRAM_VERSION
    assert not [k for k in pack.iparams if k.endswith(".shift")], "no shift vectors in a per-tensor pack"


def _check_mixed(pack) -> None:
    """Program version 4: the prefetcher reads the 8-bit expert tiles in 16 beats, sign-extended into 16-bit lanes."""
    from m3vit.hw.gen.program import PROGRAM_VERSION_MIXED, program_version

    assert program_version(pack.spec) == PROGRAM_VERSION_MIXED
    experts = [v for k, v in pack.iparams.items() if k.endswith((".e1.w", ".e2.w"))]
    assert experts and all(int(abs(v).max()) < 128 for v in experts), "8-bit expert matrices"


def _check_w8a16(pack) -> None:
    """8-bit per-row weights (GPTQ) into the MAC array's 16-bit activation lanes, program version 3."""
    from m3vit.hw.gen.program import PROGRAM_VERSION_PER_ROW, program_version

    assert program_version(pack.spec) == PROGRAM_VERSION_PER_ROW and pack.spec.weight_rounding == "gptq"
    assert all(int(abs(v).max()) < 128 for k, v in pack.iparams.items() if k.endswith(".w")), "8-bit weights"
    assert pack.spec.activations["l0.ln1"].bits == 16, "16-bit activations"


# every other precision mode / weight-scale variant of the micro vectors: (what its pack must be, cocotb tests)
VARIANTS = {
    "w16a16": (_check_w16a16, ["frame_bit_exact"]),
    "w8a8-tensor": (_check_per_tensor, ["frame_bit_exact"]),
    "w16a16e8": (_check_mixed, ["frame_bit_exact", "bad_program_or_task_writes_nothing"]),
    "w8a16": (_check_w8a16, ["frame_bit_exact"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_top_variant(vectors, tmp_path, variant):
    """Each variant's build runs one frame of the first task with random AXI pauses at the default read latency (the
    200-cycle stress frame is W8/A8's ``test_top``: three times the cycles, too long for every variant in make test):
    every point bit-exact with the integer reference and the tokens with the HLS C-simulation (the mixed-width build
    also refuses the other builds' program versions)."""
    from m3vit.quant.pack import read_pack

    check, tests = VARIANTS[variant]
    check(read_pack(vectors.folder / PACKS[variant][0] / "model.json"))
    _run_top(vectors, tmp_path, tests, variant=variant, read_latency=READ_LATENCY)


# the precision modes whose datapath differs from W8/A8's (w8a8-tensor is W8/A8's build with one shift per op)
OTHER_DATAPATHS = ("w16a16", "w16a16e8", "w8a16")


@pytest.mark.long(minutes=1.5)  # one micro frame per task and mode: minutes per mode (make test-long)
@pytest.mark.parametrize("variant", OTHER_DATAPATHS)
def test_top_variant_every_task(vectors, tmp_path, variant):
    """Every other precision mode × every task: each mode's build runs one frame of every task but the first
    (``test_top_variant``'s frame, in make test: make test and make test-long together cover every task), switched
    by one register write (no reload), at the default read latency with random pauses on every AXI channel — every
    point and the tokens bit-exact. (W8/A8 at read latency 200: ``test_top_all_tasks``; at 200 a frame takes three
    times the cycles, and every mode × task there would put CI past its budget.)"""
    _run_top(vectors, tmp_path, ["every_task"], variant=variant, read_latency=READ_LATENCY)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["w8a8", "w16a16"])
def test_top_without_dumps(vectors, tmp_path, variant):
    """A program without dumps (W8/A8, and W16/A16 for the 16-bit datapath): the top keeps every activation on chip
    and writes only the tokens — a batch of both reference frames with random AXI pauses at the default read
    latency, tokens bit-exact with the integer reference and the HLS C-simulation, scratch never written."""
    _run_top(vectors, tmp_path, ["frame_without_dumps"], variant=variant, read_latency=READ_LATENCY)


@pytest.mark.long(minutes=7)  # two whole m3vit-tiny frames (make test-long, which CI runs)
def test_top_m3vit_tiny_frame(tmp_path):
    """Issue 23's measurement: a batch of two frames of an Edge-MoE-like m3vit-tiny model (its default W8/A8 pack,
    the top built at m3vit-tiny's shapes) through the RTL top in Verilator at DDR read latency 40 — the first frame
    with every dump (every activation point bit-exact with the integer reference), the second without; both frames'
    tokens bit-exact with the integer reference and the HLS C-simulation; the cycles of each frame and of the batch
    → ``build/sim/top_cycles.json["m3vit-tiny"]["w8a8"]``; the cycle model fitted to them within 5 % of the frame."""
    from vectors import Vectors, build_tiny_vectors

    vectors = Vectors(build_tiny_vectors())
    task = vectors.meta["tasks"][0]
    update_top_cycles("m3vit-tiny", "w8a8", None)  # no stale record can pass for this run's
    _run_top(vectors, tmp_path, ["whole_frame"], config="m3vit-tiny", frames=2, ref_tasks=[task],
             read_latency=READ_LATENCY)
    record = json.loads(TOP_CYCLES_FILE.read_text())["m3vit-tiny"]["w8a8"]
    assert record["config"] == "m3vit-tiny" and len(record["layers"]) == 12
    assert record["no_dump"]["start_to_done_cycles"] < record["start_to_done_cycles"], "the dump writes cost cycles"
    _check_cycle_model(record)


def _check_cycle_model(record: dict) -> None:
    """The RTL cycle model (m3vit.hw.estimate.rtl_perf) fitted to a measured frame — with every dump, and without —
    is within 10 % of every layer and 5 % of the whole frame's layers and token write."""
    from m3vit.configs import get_config
    from m3vit.hw.estimate import rtl_perf

    cfg = get_config(record["config"])
    for rec in (record, rtl_perf.no_dump_record(record)):
        ov = rtl_perf.fit(rec, cfg)
        rows = rtl_perf.compare(rec, cfg, ov)
        assert len(rows) == cfg.depth and all(r["ok"] for r in rows), f"model vs measured cycles per layer: {rows}"
        frame = rtl_perf.compare_frame(rec, cfg, ov)
        assert frame["ok"], f"model vs measured cycles of the frame: {frame}"
