"""Fixed-point primitives of the numerics contract (NUMERICS.md §1).

A value in format ``QFormat(bits, frac)`` is a signed ``bits``-wide integer ``q`` standing for
``q · 2^-frac``. Every narrowing rounds **half up** by add-and-shift (``(x + 2^(s-1)) >> s``
with an arithmetic shift, i.e. floor) and then **saturates** to the target width; a widening into
a format saturates too (saturate-then-shift, exact). All integer arithmetic is on numpy int64;
every shift and product that could leave int64 is checked and raises :class:`FixedPointOverflow`
instead of wrapping (NUMERICS.md §3 bounds every intermediate well inside).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

MIN_RANGE_LOG2 = -24  # ranges below 2^-24 are treated as 2^-24 (keeps every shift inside int64)
INT64_MAX = (1 << 63) - 1
ISQRT_IN_BITS = 52  # the integer square root takes arguments in [0, 2^52) (LayerNorm guarantees it)


class FixedPointOverflow(OverflowError):
    """An intermediate would leave int64: the contract's bounds were violated (a bug, never a wrap)."""


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


def container_bytes(bits: int) -> int:
    """Bytes of the smallest power-of-two container of a ``bits``-wide integer: how the pack stores it, the
    accelerator's buffers hold it and the host's DDR buffers lay it out (the one definition)."""
    for nbytes in (1, 2, 4, 8):
        if bits <= 8 * nbytes:
            return nbytes
    raise ValueError(f"no container for {bits} bits")


def int_dtype(bits: int) -> np.dtype:
    """The little-endian signed numpy dtype of that container."""
    return np.dtype(f"<i{container_bytes(bits)}")


def round_half_up(value: Fraction) -> int:
    """floor(value + 1/2), exactly."""
    return math.floor(value + Fraction(1, 2))


def format_for(max_abs: float, bits: int) -> QFormat:
    """Power-of-two format with the most fractional bits in which ``max_abs`` rounds to a code that fits.

    Start from frac = (bits - 1) - ceil(log2(max_abs)) (the top bit used, Brevitas' rule
    scale = 2^ceil(log2(max_abs / 2^(bits-1)))); if ``round_half_up(max_abs · 2^frac)`` is above
    the top code 2^(bits-1) - 1 (a maximum within half a step below a power of two, or exactly a
    power of two), take one fractional bit less. Exact rational arithmetic: no float rounding.
    The same format then holds -max_abs too (also narrow-range, for weights).
    """
    if not np.isfinite(max_abs):
        raise ValueError(f"cannot choose a format for non-finite range {max_abs}; the model has inf/nan values")
    if max_abs <= 0:
        return QFormat(bits, bits - 1)
    m = Fraction(float(max_abs))
    top = math.ceil(math.log2(max_abs))
    # math.log2 is a float: fix the exponent exactly so that 2^(top-1) < m <= 2^top
    while m > Fraction(2) ** top:
        top += 1
    while m <= Fraction(2) ** (top - 1):
        top -= 1
    # A (near-)zero tensor would ask for absurd precision: floor its range, its values then quantize to ~0.
    frac = (bits - 1) - max(top, MIN_RANGE_LOG2)
    if round_half_up(m * Fraction(2) ** frac) > (1 << (bits - 1)) - 1:
        frac -= 1
    return QFormat(bits, frac)


def _bounds(x: np.ndarray) -> tuple[int, int]:
    return (int(x.min()), int(x.max())) if x.size else (0, 0)


def max_abs(x: np.ndarray) -> int:
    lo, hi = _bounds(x)
    return max(-lo, hi)


def saturate(x: np.ndarray, fmt: QFormat) -> np.ndarray:
    return np.clip(x, fmt.qmin, fmt.qmax)


def round_shift(x: np.ndarray, shift: int) -> np.ndarray:
    """x · 2^-shift rounded half up (shift > 0), or exactly widened (shift <= 0; raises if it leaves int64)."""
    x = np.asarray(x, dtype=np.int64)
    lo, hi = _bounds(x)
    if shift <= 0:
        if max(-lo, hi) > INT64_MAX >> -shift:
            raise FixedPointOverflow(f"widening by {-shift} bits would overflow int64 (|x| up to {max(-lo, hi)})")
        return x << np.int64(-shift)
    if shift >= 63:  # |x| < 2^62 here, so x · 2^-shift rounds to 0
        if max(-lo, hi) >= 1 << 62:
            raise FixedPointOverflow(f"|x| = {max(-lo, hi)} too wide for a {shift}-bit narrowing")
        return np.zeros_like(x)
    half = 1 << (shift - 1)
    if hi > INT64_MAX - half:
        raise FixedPointOverflow(f"rounding {hi} by {shift} bits would overflow int64")
    return (x + np.int64(half)) >> np.int64(shift)


def requantize_shift(acc: np.ndarray, shift: int, fmt: QFormat) -> np.ndarray:
    """Move an integer ``shift`` fractional bits down into ``fmt``: round half up then saturate (shift > 0),
    or saturate then shift left (shift <= 0: exact, and never wraps)."""
    acc = np.asarray(acc, dtype=np.int64)
    if shift >= 0:
        return saturate(round_shift(acc, shift), fmt)
    s = -shift
    if s >= fmt.bits:  # any nonzero value saturates
        return np.where(acc > 0, fmt.qmax, np.where(acc < 0, fmt.qmin, 0)).astype(np.int64)
    lo, hi = -((-fmt.qmin) >> s), fmt.qmax >> s  # ceil(qmin / 2^s), floor(qmax / 2^s)
    return np.where(acc > hi, fmt.qmax, np.where(acc < lo, fmt.qmin, np.clip(acc, lo, hi) << np.int64(s)))


def requantize(acc: np.ndarray, acc_frac: int, fmt: QFormat) -> np.ndarray:
    """Narrow (or widen) an integer with ``acc_frac`` fractional bits into ``fmt`` (round, saturate)."""
    return requantize_shift(acc, acc_frac - fmt.frac, fmt)


def checked_mul(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Elementwise int64 product; raises instead of wrapping when a product could exceed int64."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if max_abs(a) * max_abs(b) > INT64_MAX:
        raise FixedPointOverflow(f"product of |a| <= {max_abs(a)} and |b| <= {max_abs(b)} exceeds int64")
    return a * b


def checked_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer a @ b; raises when a sum of products could exceed int64 (bound max|a| · max column Σ|b|)."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if b.size and a.size:
        col = np.abs(b).sum(axis=-2)  # |b| < 2^47 and at most 2^16 rows in every use: no int64 overflow here
        if max_abs(a) * int(col.max()) > INT64_MAX:
            raise FixedPointOverflow(f"matrix product with |a| <= {max_abs(a)} could exceed int64")
    return a @ b


def quantize(x: np.ndarray, fmt: QFormat, narrow: bool = False) -> np.ndarray:
    """Float → integer in ``fmt``: round half up (floor(x·2^f + 1/2), exactly), saturate.

    ``x · 2^f`` is exact in float64 (a power-of-two scale) and so is its fractional part, so the
    tie test below has no float rounding (``floor(x·2^f + 0.5)`` in floats rounds 0.5 - 2^-54 up).
    ``narrow`` drops the most negative code (symmetric range), as the contract does for weights.
    """
    scaled = np.asarray(x, dtype=np.float64) * (2.0 ** fmt.frac)
    whole = np.floor(scaled)
    rounded = whole + (scaled - whole >= 0.5)
    lo = fmt.qmin + 1 if narrow else fmt.qmin
    return np.clip(rounded, lo, fmt.qmax).astype(np.int64)


def quantize_rows(x: np.ndarray, bits: int, row_fracs: np.ndarray, narrow: bool = False) -> np.ndarray:
    """Float → integer with one fractional-bit count per output row (``row_fracs`` shaped ``x.shape[:-1]``).

    The per-row form of :func:`quantize` (same exact half-up rounding and saturation); equal
    ``row_fracs`` give exactly ``quantize(x, QFormat(bits, f))``.
    """
    fracs = np.asarray(row_fracs, dtype=np.int64)
    if fracs.shape != np.shape(x)[:-1]:
        raise ValueError(f"row fractions shaped {fracs.shape} do not match a tensor shaped {np.shape(x)}")
    scaled = np.asarray(x, dtype=np.float64) * np.ldexp(1.0, fracs)[..., None]
    whole = np.floor(scaled)
    rounded = whole + (scaled - whole >= 0.5)
    top = (1 << (bits - 1)) - 1
    return np.clip(rounded, -top if narrow else -top - 1, top).astype(np.int64)


def requantize_rows(acc: np.ndarray, shifts: np.ndarray, fmt: QFormat) -> np.ndarray:
    """:func:`requantize_shift` with one shift per output channel (the last axis of ``acc``).

    Each channel is rounded / saturated exactly as a per-tensor requantize with its own shift, so equal
    shifts give bit-identical results to ``requantize_shift(acc, shift, fmt)``.
    """
    acc = np.asarray(acc, dtype=np.int64)
    shifts = np.asarray(shifts, dtype=np.int64)
    if shifts.shape != acc.shape[-1:]:
        raise ValueError(f"{shifts.shape} shifts for accumulators shaped {acc.shape}: one per output channel")
    out = np.empty_like(acc)
    for s in np.unique(shifts):
        cols = shifts == s
        out[..., cols] = requantize_shift(acc[..., cols], int(s), fmt)
    return out


def dequantize(q: np.ndarray, fmt_or_frac: QFormat | int) -> np.ndarray:
    frac = fmt_or_frac.frac if isinstance(fmt_or_frac, QFormat) else fmt_or_frac
    return np.asarray(q, dtype=np.float64) * (2.0 ** -frac)


def isqrt(v: np.ndarray) -> np.ndarray:
    """Exact floor(sqrt(v)) for 0 <= v < 2^52, bit by bit (the restoring method the hardware uses)."""
    v = np.asarray(v, dtype=np.int64)
    lo, hi = _bounds(v)
    if lo < 0 or hi >= 1 << ISQRT_IN_BITS:
        raise ValueError(f"isqrt argument outside [0, 2^{ISQRT_IN_BITS})")
    rem, root = v.copy(), np.zeros_like(v)
    bit = np.int64(1) << np.int64(ISQRT_IN_BITS - 2)
    while bit:
        trial = root + bit
        take = rem >= trial
        rem = np.where(take, rem - trial, rem)
        root = np.where(take, (root >> 1) + bit, root >> 1)
        bit >>= 2
    return root


def div_round(num: np.ndarray | int, den: np.ndarray) -> np.ndarray:
    """round-half-up(num / den) for num >= 0 and positive ``den`` (the one divider each row needs)."""
    num = np.asarray(num, dtype=np.int64)
    den = np.asarray(den, dtype=np.int64)
    if _bounds(den)[0] <= 0:
        raise ValueError("div_round needs a positive divisor")
    return (2 * num + den) // (2 * den)
