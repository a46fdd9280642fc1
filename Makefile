# Top-level entry points. `make demo` and `make test` each set up the environment first,
# so either one alone works on a fresh machine.
SHELL := /bin/bash
PYTHON_BOOTSTRAP ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
DEMO_OUT ?= build/demo

.PHONY: help setup demo test test-fast test-long test-all lint clean csim hls-check hls-estimate hls hls-cosim bitstream rtl-sim rtl-sim-top rtl-lint rtl-estimates rtl-estimates-top bench board-bundle

help:
	@echo "make setup      create $(VENV) with the pinned toolchain (idempotent)"
	@echo "make demo       synthetic data -> train -> quantize -> pack -> C-sim via the host runtime -> compare report (build/demo/)"
	@echo "make test       every test that can run on this machine (slow ones included), on every core"
	@echo "make test-fast  the same without tests marked slow"
	@echo "make test-long  the runs too long for make test (the RTL top's yosys synthesis, every task through the RTL top, ...)"
	@echo "make test-all   make test and make test-long in one session, long runs first (what CI runs)"
	@echo "make lint       ruff"
	@echo "make rtl-sim    cocotb testbenches of rtl/ (Verilator, Icarus subset); RTL_DIR=<folder> tests other RTL"
	@echo "make rtl-sim-top RTL_DIR=<dir> TOP=m3vit_accel  the micro frame test on an exported top (Vitis port names)"
	@echo "make rtl-lint   verilator --lint-only -Wall on every RTL unit"
	@echo "make rtl-estimates  yosys synth_xilinx resource estimates -> build/rtl/estimates.json"
	@echo "make rtl-estimates-top  the whole RTL top (micro, m3vit-tiny W8/A8) -> build/rtl/estimates.json"
	@echo "make bench      modelled ZCU104 performance + measured CPU speed -> build/bench/*.json, *.png"
	@echo "make csim       HLS C-sim: shared library + standalone testbench, run on micro W8/A8 vectors"
	@echo "make hls-check  HLS rule checker (libclang): stream pointers, recursion, 64-bit, dataflow, tripcount, storage"
	@echo "make hls-estimate  DSP/BRAM/URAM/LUT of the HLS design as built (no Vitis) -> build/hls/resources.json"
	@echo "make hls        Vitis HLS csim + csynth + IP export (HLS_CONFIG, HLS_MODE; needs vitis_hls)"
	@echo "make hls-cosim  Vitis HLS csynth + C/RTL co-simulation of the micro config (needs vitis_hls)"
	@echo "make bitstream  Vivado ZCU104 block design -> build/bitstream/m3vit.bit + .hwh (needs vivado)"
	@echo "make board-bundle  build/board/: host wheel, pack, golden outputs, bitstream if built, README (after make demo)"

setup: $(STAMP)

$(STAMP): requirements.txt requirements-hls.txt pyproject.toml host/pyproject.toml
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-hls.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . -e ./host  # m3vit-edge and m3vit-host (host/README.md)
	@command -v iverilog >/dev/null || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -qq iverilog >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq iverilog; }; \
	  else echo "setup: Icarus Verilog (iverilog) missing and not installable here (needs root + apt-get): its RTL tests will fail until it is installed"; fi; }
	touch $@

demo: setup
	$(PY) -m m3vit.cli.demo --out $(DEMO_OUT) --force
	@echo "[demo] accelerator C-simulation through the host runtime, every task, against the float golden model"
	$(PY) -m m3vit_host.cli compare --backend csim --pack $(DEMO_OUT)/pack/model.json \
	  --checkpoint $(DEMO_OUT)/train/last.pt --val-samples 256 --batch-size 16 --out $(DEMO_OUT)/host --no-progress --force

# pytest-xdist spreads the tests over every core (worksteal balances the minute-long RTL-top runs); Verilator and
# C-sim builds are cached under build/ and built once, under a lock, whichever worker asks first.
PYTEST_PAR ?= -n auto --dist worksteal
test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_PAR) --durations=25 $(if $(RTL_DIR),--rtl-dir $(RTL_DIR))

test-fast: setup
	$(PY) -m pytest $(PYTEST_PAR) -m "not slow and not long and not vitis and not vivado and not board"

test-long: setup
	$(PY) -m pytest $(PYTEST_PAR) --durations=10 -m "long and not vitis and not vivado and not board"

# make test and make test-long in one pytest session (what CI runs): one collection, and both cores stay busy to
# the end — the long runs start first (conftest.py) and the short ones fill in beside them
test-all: setup
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_PAR) --durations=30 -m "not vitis and not vivado and not board"

lint: setup
	$(PY) -m ruff check .

# Modelled accelerator figures (cycle/traffic model, routing measured on synthetic scenes; calibrated by
# build/sim/cycles.json when the RTL benches have written it) and measured software speed on this CPU.
BENCH_FRAMES ?= 2
bench: setup
	$(PY) -m m3vit.hw.estimate.perf_report --out build/bench --frames 4
	$(PY) model/benchmarks/software_speed.py --out build/bench --frames $(BENCH_FRAMES)

RTL_DIR ?=
rtl-sim: setup
	$(PY) -m pytest sim -q $(if $(RTL_DIR),--rtl-dir $(RTL_DIR))

# The micro frame test of sim/top on another accelerator top, bound by Vitis HLS's port names, e.g. its export:
# make rtl-sim-top RTL_DIR=<prj>/solution1/impl/verilog TOP=m3vit_accel
TOP ?= m3vit_accel
rtl-sim-top: setup
	$(if $(RTL_DIR),,$(error rtl-sim-top needs RTL_DIR=<folder of the exported Verilog> (and TOP=<module>, default m3vit_accel)))
	$(PY) -m pytest sim/top/test_top.py::test_top_under_vitis_names -q --rtl-dir $(RTL_DIR) --top $(TOP)

rtl-lint: setup
	$(PY) rtl/tools/lint.py

rtl-estimates: setup
	$(PY) rtl/tools/estimates.py

rtl-estimates-top: setup
	$(PY) rtl/tools/estimates.py top

clean:
	rm -rf build runs reports .pytest_cache

# --- HLS accelerator (hls/) ------------------------------------------------------------------------
HLS_CONFIG ?= m3vit-tiny
HLS_MODE ?= w8a8
HLS_BUILD := build/hls/$(HLS_CONFIG)-$(HLS_MODE)

csim: setup
	$(PY) -m m3vit.hw.run.vectors --config micro --mode w8a8 --out build/hls/vectors/micro-w8a8 --run

# The HLS rules (hls/README.md "HLS rules"): libclang over the synthesized functions of the top.
hls-check: setup
	PYTHONPATH=model $(PY) hls/tools/check_hls.py --config $(HLS_CONFIG) --mode $(HLS_MODE) --baseline hls/tools/check_hls_baseline.json

hls-estimate: setup
	PYTHONPATH=model $(PY) -m m3vit.hw.estimate.hls_estimate --config $(HLS_CONFIG) --mode $(HLS_MODE) --out build/hls/resources.json

# Vendor tools are checked first (when the target runs), so a machine without them stops at once with one line.
# The device's part, clock and beat for the tcl scripts, from its one definition (m3vit.hw.platform).
PLATFORM_TCL := build/hw/platform.tcl
hls:
	$(if $(shell command -v vitis_hls),,$(error vitis_hls is not on PATH: install Vitis HLS and source its settings64.sh, then rerun make hls))
	$(MAKE) setup
	$(PY) -m m3vit.hw.platform --tcl $(PLATFORM_TCL)
	$(PY) -m m3vit.hw.run.vectors --config $(HLS_CONFIG) --mode $(HLS_MODE) --frames 1 --out $(HLS_BUILD)/vectors
	vitis_hls -f hls/scripts/run_hls.tcl -tclargs $$($(PY) -m m3vit.hw.gen.hls_config --config $(HLS_CONFIG) --mode $(HLS_MODE)) $(HLS_BUILD)/vectors $(HLS_BUILD)/prj csim csynth export

# C/RTL co-simulation on the micro config (a full m3vit-tiny frame would take hours); m_axi depths are the
# config's real sizes (m3vit.hw.gen.axi_depth).
COSIM_BUILD := build/hls/micro-$(HLS_MODE)-cosim
hls-cosim:
	$(if $(shell command -v vitis_hls),,$(error vitis_hls is not on PATH: install Vitis HLS and source its settings64.sh, then rerun make hls-cosim))
	$(MAKE) setup
	$(PY) -m m3vit.hw.platform --tcl $(PLATFORM_TCL)
	$(PY) -m m3vit.hw.run.vectors --config micro --mode $(HLS_MODE) --frames 1 --out $(COSIM_BUILD)/vectors
	vitis_hls -f hls/scripts/run_hls.tcl -tclargs $$($(PY) -m m3vit.hw.gen.hls_config --config micro --mode $(HLS_MODE)) $(COSIM_BUILD)/vectors $(COSIM_BUILD)/prj csynth cosim

# From the IP that `make hls` exported (never reruns Vitis HLS); fails when the routed design misses timing.
HLS_IP := $(HLS_BUILD)/prj/m3vit_accel_prj/solution1/impl/ip
bitstream:
	$(if $(shell command -v vivado),,$(error vivado is not on PATH: install Vivado and source its settings64.sh, then rerun make bitstream))
	$(if $(wildcard $(HLS_IP)/component.xml),,$(error no exported HLS IP in $(HLS_IP): run make hls HLS_CONFIG=$(HLS_CONFIG) HLS_MODE=$(HLS_MODE) first))
	$(MAKE) setup
	$(PY) -m m3vit.hw.platform --tcl $(PLATFORM_TCL)
	vivado -mode batch -source hls/scripts/build_bitstream.tcl -tclargs $(HLS_IP) build/bitstream

# What the ZCU104 needs (host/README.md): the lean m3vit-host wheel, the pack (head weights inside), golden outputs
# for `compare --golden`, the bitstream and .hwh where `make bitstream` built them, and a README of the commands.
BOARD_PACK ?= $(DEMO_OUT)/pack/model.json
BOARD_CHECKPOINT ?= $(DEMO_OUT)/train/last.pt
board-bundle: setup
	PYTHONPATH=model:host $(PY) host/make_bundle.py --pack $(BOARD_PACK) --checkpoint $(BOARD_CHECKPOINT) \
	  --bitstream build/bitstream/m3vit.bit --out build/board
