"""Fixed-point primitives of the numerics contract (NUMERICS.md §1).

A value in format ``QFormat(bits, frac)`` is a signed ``bits``-wide integer ``q`` standing for
``q · 2^-frac``. Every narrowing rounds **half up** by add-and-shift (``(x + 2^(s-1)) >> s``
with an arithmetic shift, i.e. floor) and then **saturates** to the target width. Widening
shifts are exact. All integer arithmetic here is on numpy int64, which is wider than every
accumulator the contract allows (NUMERICS.md §3 bounds them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_RANGE_LOG2 = -24  # ranges below 2^-24 are treated as 2^-24 (keeps every shift inside int64)


@dataclass(frozen=True, order=True)
class QFormat:
    bits: int
    frac: int

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 62:
            raise ValueError(f"format width must be in [2, 62] bits, got {self.bits}")

    @property
    def qmin(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1

    @property
    def lsb(self) -> float:
        return 2.0 ** -self.frac

    def __str__(self) -> str:
        return f"Q{self.bits}.{self.frac}"

    def to_dict(self) -> dict:
        return {"bits": self.bits, "frac": self.frac}

    @classmethod
    def from_dict(cls, d: dict) -> QFormat:
        return cls(int(d["bits"]), int(d["frac"]))


def format_for(max_abs: float, bits: int) -> QFormat:
    """Power-of-two format whose range just covers ``max_abs`` (the calibration rule).

    frac = (bits - 1) - ceil(log2(max_abs)): the largest magnitude uses the top bit. Same rule
    as Brevitas' fixed-point quantizers (scale = 2^ceil(log2(max_abs / 2^(bits-1)))).
    """
    if not np.isfinite(max_abs):
        raise ValueError(f"cannot choose a format for non-finite range {max_abs}; the model has inf/nan values")
    if max_abs <= 0:
        return QFormat(bits, bits - 1)
    # A (near-)zero tensor would ask for absurd precision: floor its range, its values then quantize to ~0.
    return QFormat(bits, (bits - 1) - max(math.ceil(math.log2(max_abs)), MIN_RANGE_LOG2))


def saturate(x: np.ndarray, fmt: QFormat) -> np.ndarray:
    return np.clip(x, fmt.qmin, fmt.qmax)


def round_shift(x: np.ndarray, shift: int) -> np.ndarray:
    """x · 2^-shift rounded half up (shift > 0), or exactly widened (shift <= 0)."""
    x = np.asarray(x, dtype=np.int64)
    if shift <= 0:
        return x << np.int64(-shift)
    if shift >= 63:  # |x| < 2^62 in every use, so x · 2^-shift rounds to 0
        return np.zeros_like(x)
    return (x + np.int64(1 << (shift - 1))) >> np.int64(shift)


def requantize(acc: np.ndarray, acc_frac: int, fmt: QFormat) -> np.ndarray:
    """Narrow an integer with ``acc_frac`` fractional bits into ``fmt`` (round, saturate)."""
    return saturate(round_shift(acc, acc_frac - fmt.frac), fmt)


def quantize(x: np.ndarray, fmt: QFormat, narrow: bool = False) -> np.ndarray:
    """Float → integer in ``fmt``: round half up (floor(x·2^f + 0.5)), saturate.

    ``narrow`` drops the most negative code (symmetric range), as the contract does for weights.
    """
    scaled = np.floor(np.asarray(x, dtype=np.float64) * (2.0 ** fmt.frac) + 0.5)
    lo = fmt.qmin + 1 if narrow else fmt.qmin
    return np.clip(scaled, lo, fmt.qmax).astype(np.int64)


def dequantize(q: np.ndarray, fmt_or_frac: QFormat | int) -> np.ndarray:
    frac = fmt_or_frac.frac if isinstance(fmt_or_frac, QFormat) else fmt_or_frac
    return np.asarray(q, dtype=np.float64) * (2.0 ** -frac)


def isqrt(v: np.ndarray) -> np.ndarray:
    """Exact floor(sqrt(v)) for 0 <= v < 2^52 (float estimate, then corrected by one step)."""
    v = np.asarray(v, dtype=np.int64)
    if np.any(v < 0) or np.any(v >= 1 << 52):
        raise ValueError("isqrt argument outside [0, 2^52)")
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    r = np.where(r * r > v, r - 1, r)
    r = np.where((r + 1) * (r + 1) <= v, r + 1, r)
    return r


def div_round(num: np.ndarray | int, den: np.ndarray) -> np.ndarray:
    """round-half-up(num / den) for positive ``den`` (the one divider each row needs)."""
    num = np.asarray(num, dtype=np.int64)
    den = np.asarray(den, dtype=np.int64)
    return (2 * num + den) // (2 * den)
