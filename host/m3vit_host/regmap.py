"""The accelerator's AXI-Lite register map: programming offsets, and the check against a bitstream.

Offsets come only from :mod:`m3vit.hw.gen.interface`. On the board PYNQ parses the ``.hwh`` into
``ip.register_map``; Vitis HLS names a 64-bit ``m_axi`` offset ``<arg>_1`` (low word) and
``<arg>_2`` (high word) there, a 32-bit scalar ``<arg>``, and the control word ``CTRL``.
:func:`check_register_map` compares that map with ours before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from m3vit.hw.gen import interface

from .errors import RegisterMapError


def expected_registers(args: tuple[interface.Arg, ...] = interface.ARGS) -> dict[str, int]:
    """Register name (as PYNQ shows it) → byte offset, for every word the driver writes."""
    regs = {"CTRL": interface.REG_CTRL}
    for arg in args:
        offset = interface.register_map(args)[arg.name]
        if arg.kind == "mem":
            regs[f"{arg.name}_1"], regs[f"{arg.name}_2"] = offset, offset + 4
        else:
            regs[arg.name] = offset
    return regs


def _lookup(register_map: Any, name: str) -> Any:
    if isinstance(register_map, dict):
        return register_map.get(name)
    return getattr(register_map, name, None)


def _address(register: Any) -> int | None:
    if register is None:
        return None
    if isinstance(register, dict):
        return register.get("address_offset", register.get("address"))
    return getattr(register, "address", None)


def _mismatches(register_map: Any) -> Iterator[str]:
    for arg in interface.ARGS:
        offset = interface.register_map()[arg.name]
        if arg.kind == "mem":
            low, high = _address(_lookup(register_map, f"{arg.name}_1")), _address(_lookup(register_map,
                                                                                            f"{arg.name}_2"))
            whole = _lookup(register_map, arg.name)  # some tool versions keep one 64-bit register
            if low is None and whole is not None and getattr(whole, "width", 64) == 64:
                low, high = _address(whole), _address(whole) + 4
            found = {"low word": low, "high word": high}
            for part, want in (("low word", offset), ("high word", offset + 4)):
                if found[part] is None:
                    yield f"{arg.name} ({part}) is missing"
                elif found[part] != want:
                    yield f"{arg.name} ({part}) at {found[part]:#x}, expected {want:#x}"
        else:
            got = _address(_lookup(register_map, arg.name))
            if got is None:
                yield f"{arg.name} is missing"
            elif got != offset:
                yield f"{arg.name} at {got:#x}, expected {offset:#x}"
    ctrl = _address(_lookup(register_map, "CTRL"))
    if ctrl is not None and ctrl != interface.REG_CTRL:
        yield f"CTRL at {ctrl:#x}, expected {interface.REG_CTRL:#x}"


def check_register_map(register_map: Any, source: str = "the bitstream") -> None:
    """Raise :class:`RegisterMapError` listing every register of ours that ``register_map`` lacks or moves."""
    problems = list(_mismatches(register_map))
    if problems:
        shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
        raise RegisterMapError(f"{source} does not implement this toolkit's {interface.TOP_FUNCTION} interface "
                               f"({shown}): rebuild the bitstream from this checkout's hls/ or use the toolkit "
                               f"version that built it")
