"""Comparing an obtained golden entry with the expected one, and the failure message.

A failure prints an aligned obtained / expected / difference table, the band that applied, the
context (e.g. an environment difference) and the exact command that regenerates the golden
(pytest-regressions' habit). Values of another JSON type than the golden's are shown with their
type, so a string where a number belongs never prints as equal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.golden.bands import EXACT, Band

__all__ = ["BAND_FIELDS", "INFO_FIELDS", "Mismatch", "compare_entry", "compare_values",
           "format_table", "format_mismatch"]

#: Fields of a count entry compared within the ``regress`` band (all others exactly).
BAND_FIELDS = frozenset({"raw", "flops", "by_op", "by_key"})
#: Fields that are information only, never compared.
INFO_FIELDS = frozenset({"version", "note", "notes"})


@dataclass(frozen=True)
class Mismatch:
    """One row of a failure table."""

    field: str
    obtained: Any
    expected: Any
    note: str = ""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numeric_map(value: Any) -> bool:
    return isinstance(value, Mapping) and all(_is_number(v) for v in value.values())


def compare_entry(obtained: Mapping[str, Any], expected: Mapping[str, Any], band: Band,
                  *, band_fields: frozenset[str] = BAND_FIELDS,
                  info_fields: frozenset[str] = INFO_FIELDS) -> list[Mismatch]:
    """Rows where ``obtained`` differs from ``expected``.

    Fields in ``band_fields`` are compared within ``band`` (a mapping field per key; a key
    present on one side only is a row of its own, "new" or "gone"); other fields exactly;
    fields in ``info_fields`` not at all. A value whose JSON type differs from the golden's
    (``"5"`` against ``5``) is always a row, noted "type differs".
    """
    rows: list[Mismatch] = []
    for name in sorted(set(obtained) | set(expected)):
        if name in info_fields:
            continue
        got, want = obtained.get(name), expected.get(name)
        if name not in expected:
            rows.append(Mismatch(name, got, None, "new field"))
            continue
        if name not in obtained:
            rows.append(Mismatch(name, None, want, "field gone"))
            continue
        use_band = band if name in band_fields else EXACT
        if _is_number(got) and _is_number(want):
            if not use_band.allows(got, want):
                rows.append(Mismatch(name, got, want))
        elif _numeric_map(got) and _numeric_map(want):
            for op in sorted(set(got) | set(want)):
                label = f"{name}[{op}]"
                if op not in want:
                    rows.append(Mismatch(label, got[op], None, "new op"))
                elif op not in got:
                    rows.append(Mismatch(label, None, want[op], "op gone"))
                elif not use_band.allows(got[op], want[op]):
                    rows.append(Mismatch(label, got[op], want[op]))
        else:
            rows += compare_values(name, got, want)
    return rows


def compare_values(name: str, got: Any, want: Any) -> list[Mismatch]:
    """Exact comparison of two JSON values, one row per differing leaf (``a.b[2]`` paths)."""
    if isinstance(got, Mapping) and isinstance(want, Mapping):
        rows: list[Mismatch] = []
        for key in sorted(set(got) | set(want), key=str):
            label = f"{name}.{key}"
            if key not in want:
                rows.append(Mismatch(label, got[key], None, "new"))
            elif key not in got:
                rows.append(Mismatch(label, None, want[key], "gone"))
            else:
                rows += compare_values(label, got[key], want[key])
        return rows
    if type(got) is not type(want) and not (_is_number(got) and _is_number(want)):
        return [Mismatch(name, got, want, f"type differs ({_type(got)} vs golden {_type(want)})")]
    if got != want:
        return [Mismatch(name, got, want)]
    return []


def _type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
            int: "number", float: "number"}.get(type(value), type(value).__name__)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.6g}"
    if isinstance(value, str):
        text = json.dumps(value)          # quoted: "123" never reads as the number 123
    else:
        text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def _difference(row: Mismatch) -> str:
    got, want = row.obtained, row.expected
    if _is_number(got) and _is_number(want):
        diff = got - want
        text = f"{diff:+,}" if isinstance(diff, int) else f"{diff:+,.6g}"
        if want:
            rel = diff / abs(want)
            text += f" ({rel:+.3%})" if abs(rel) >= 1e-4 or rel == 0 else f" ({rel:+.2e} rel)"
        return text + (f" {row.note}" if row.note else "")
    return row.note or "differs"


def format_table(rows: list[Mismatch], *, headers: tuple[str, str, str, str] =
                 ("field", "obtained", "expected", "difference")) -> str:
    """An aligned obtained / expected / difference table."""
    cells = [headers] + [(r.field, _fmt(r.obtained), _fmt(r.expected), _difference(r)) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = []
    for n, c in enumerate(cells):
        lines.append("  " + "  ".join([c[0].ljust(widths[0]), c[1].rjust(widths[1]),
                                       c[2].rjust(widths[2]), c[3]]).rstrip())
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_mismatch(title: str, rows: list[Mismatch], *, band: Band | None = None,
                    path: Path | str | None = None, regenerate: str | None = None,
                    context: Iterable[str] = ()) -> str:
    """The whole failure message: title, where, band, table, context lines, fix command."""
    parts = [title]
    if path is not None:
        parts.append(f"golden: {path}")
    if band is not None:
        parts.append(f"band: {band.describe()}" + (f" -- {band.note}" if band.note else ""))
    parts.append("")
    parts.append(format_table(rows))
    extra = [line for line in context if line]
    if extra:
        parts.append("")
        parts.extend(extra)
    if regenerate:
        parts.append("")
        parts.append("If the change is deliberate, regenerate this golden with:")
        parts.append(f"  {regenerate}")
    return "\n".join(parts)
