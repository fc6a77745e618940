"""Human-friendly numbers for the report: FLOPs, bytes, counts, with 4 significant digits.

JSON and CSV keep exact integers; only the Markdown, the terminal and the plots use these.
FLOPs = 2 x MACs everywhere (the unit names say FLOP, never "ops").
"""

from __future__ import annotations

import math

__all__ = ["sig", "flop", "flop_signed", "nbytes", "count", "pct", "intensity"]

_FLOP_UNITS = ((1e15, "PFLOP"), (1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP"), (1e3, "kFLOP"))
_BYTE_UNITS = ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB"))
_COUNT_UNITS = ((1e9, "B"), (1e6, "M"), (1e3, "k"))


def sig(value: float, digits: int = 4) -> str:
    """``value`` with ``digits`` significant digits, no exponent for the magnitudes used here."""
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return str(value)
    exponent = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - exponent)
    text = f"{value:.{decimals}f}"
    # rounding may carry into a new digit (999.95 -> 1000.0): one decimal too many then
    if decimals and len(text.replace("-", "").replace(".", "").lstrip("0")) > digits:
        text = f"{value:.{decimals - 1}f}"
    return text


def _scaled(value: float, units: tuple[tuple[float, str], ...], base: str, digits: int) -> str:
    magnitude = abs(value)
    for factor, name in units:
        if magnitude >= factor:
            return f"{sig(value / factor, digits)} {name}"
    return f"{sig(value, digits) if not float(value).is_integer() else int(value)} {base}"


def flop(value: float | None, digits: int = 4) -> str:
    """``234.7 GFLOP`` (FLOPs = 2 x MACs); ``None`` -> ``n/a``."""
    if value is None:
        return "n/a"
    return _scaled(value, _FLOP_UNITS, "FLOP", digits)


def flop_signed(value: float | None, digits: int = 4) -> str:
    """``+1.234 GFLOP`` / ``-5 FLOP`` / ``0``."""
    if value is None:
        return "n/a"
    if value == 0:
        return "0"
    return ("+" if value > 0 else "") + flop(value, digits)


def nbytes(value: float | None, digits: int = 4) -> str:
    """``1.234 GB`` (decimal units); ``None`` -> ``n/a``."""
    if value is None:
        return "n/a"
    return _scaled(value, _BYTE_UNITS, "B", digits)


def count(value: float | None, digits: int = 4) -> str:
    """``3.389 B`` parameters, ``96.5 M``; ``None`` -> ``n/a``."""
    if value is None:
        return "n/a"
    return _scaled(value, _COUNT_UNITS, "", digits).rstrip()


def pct(part: float, whole: float) -> str:
    """``+0.01234%`` of ``whole`` (4 significant digits), ``n/a`` when ``whole`` is 0."""
    if not whole:
        return "n/a" if part else "0%"
    value = 100.0 * part / whole
    return ("+" if value > 0 else "") + sig(value) + "%"


def intensity(value: float | None) -> str:
    """Arithmetic intensity in FLOP/B with 4 significant digits."""
    if value is None:
        return "n/a"
    return f"{sig(value)} FLOP/B"
