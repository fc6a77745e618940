"""Human-friendly numbers for the report: FLOPs, bytes, counts, with 4 significant digits.

JSON and CSV keep exact integers; only the Markdown, the terminal and the plots use these.
FLOPs = 2 x MACs everywhere (the unit names say FLOP, never "ops").
"""

from __future__ import annotations

import math
from typing import Iterable

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


def md_table(header: list[str], rows: Iterable[list[str]], align: str | None = None) -> list[str]:
    """A Markdown table (first column left-aligned, the rest right, unless ``align`` says)."""
    align = align or ("l" + "r" * (len(header) - 1))
    marks = {"l": "---", "r": "---:", "c": ":---:"}
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks[a] for a in align) + " |"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return out


def pages_text(pages: Iterable[str], limit: int = 6, more: str = "more") -> str:
    """Page ids, the first ``limit - 1`` and how many more past ``limit``."""
    pages = list(pages)
    if len(pages) <= limit:
        return ", ".join(pages)
    return f"{', '.join(pages[:limit - 1])} … (+{len(pages) - limit + 1} {more})"


def short_reason(text: str | None, limit: int = 240) -> str:
    """The first line of an error without long parenthesised internals, at most ``limit`` chars."""
    import re

    if not text:
        return "not measured"
    line = text.strip().splitlines()[0]
    out, depth, start = [], 0, 0
    for i, ch in enumerate(line):            # drop balanced (...) groups of 60+ characters
        if ch == "(":
            if depth == 0:
                start = i
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
            if depth == 0:
                group = line[start:i + 1]
                if len(group) < 60:
                    out.append(group)
            continue
        if depth == 0:
            out.append(ch)
    if depth:                                 # unbalanced: keep the tail as it was
        out.append(line[start:])
    short = re.sub(r"\s+", " ", "".join(out))
    short = re.sub(r"\s+([.,;:])(?=\s|$)", r"\1", short).strip()
    return short if len(short) <= limit else short[: limit - 3] + "..."


def md_image(caption: str, name: str) -> str:
    """A Markdown image of the file ``name`` beside report.md: the target percent-encoded, so a
    space or a parenthesis in a page id does not break the link."""
    from urllib.parse import quote

    shown = caption.replace("[", "\\[").replace("]", "\\]")
    return f"![{shown}]({quote(name)})"
