"""Tolerance bands: one hand-edited TOML file that ``--update-golden`` never writes.

A band allows ``|obtained - expected| <= abs + rel * |expected|``. Tables are
``[<kind>.<stage>.<counter>.<convention>]`` with ``"*"`` as a wildcard at any level; missing
deeper levels mean "any". ``kind`` is ``verify`` (analytic vs measured, after the delta
explanation) or ``regress`` (measured vs golden). Without a matching table the band is exact, so
regenerating goldens can never widen a band. A table naming a stage, counter or convention that
does not exist is an error (a typo would otherwise silently never match).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Band", "Bands", "BandsError", "EXACT", "load_bands", "BANDS_SCHEMA", "CONVENTIONS"]

BANDS_SCHEMA = 1
#: The conventions a counter's raw figure can have.
CONVENTIONS = ("flop", "mac")
_BAND_KEYS = {"rel", "abs", "note"}
_KINDS = ("verify", "regress")


class BandsError(Exception):
    """A tolerance file that cannot be used (names the file and what to fix)."""


@dataclass(frozen=True)
class Band:
    """``|obtained - expected| <= abs + rel * |expected|``; ``where`` says which table it came from."""

    rel: float = 0.0
    abs: float = 0.0
    where: str = "default (exact)"
    note: str = ""

    def allows(self, obtained: float, expected: float) -> bool:
        """Whether ``obtained`` is within the band around ``expected``."""
        return abs(obtained - expected) <= self.abs + self.rel * abs(expected)

    def describe(self) -> str:
        """``rel 0.01, abs 0 ([verify.sam.thop])``."""
        return f"rel {self.rel:g}, abs {self.abs:g} ({self.where})"


EXACT = Band()


@dataclass
class Bands:
    """The tolerance tables of one TOML file, looked up most-specific-first."""

    tables: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def lookup(self, kind: str, *parts: str) -> Band:
        """The most specific band for ``(kind, stage, counter[, convention])``.

        Specificity compares the levels left to right: an exact name beats ``"*"``, and a
        table that names a level beats one that stops above it.
        """
        best: tuple[tuple[int, ...], Band] | None = None

        def walk(table: Mapping[str, Any], depth: int, score: tuple[int, ...], where: list[str]) -> None:
            nonlocal best
            if _BAND_KEYS & set(table):
                full = score + (0,) * (len(parts) - len(score))
                band = Band(float(table.get("rel", 0.0)), float(table.get("abs", 0.0)),
                            "[" + ".".join(where) + "]", str(table.get("note", "")))
                if best is None or full > best[0]:
                    best = (full, band)
            if depth >= len(parts):
                return
            for name, rank in ((parts[depth], 2), ("*", 1)):
                sub = table.get(name)
                if isinstance(sub, Mapping):
                    walk(sub, depth + 1, score + (rank,), where + [name if name != "*" else '"*"'])

        root = self.tables.get(kind)
        if isinstance(root, Mapping):
            walk(root, 0, (), [kind])
        return best[1] if best else EXACT


def _unknown_name(path: Path, where: str, level: str, name: str, known: Iterable[str]) -> BandsError:
    known = sorted(set(known))
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
    return BandsError(f"{path}: [{where}] names the {level} {name!r}, which does not exist.{hint}\n"
                      f"Known {level}s: {', '.join(known)} (or \"*\")")


def _validate(tables: Mapping[str, Any], path: Path, levels: tuple[tuple[str, frozenset[str] | None], ...]) -> None:
    def check(table: Mapping[str, Any], where: str, depth: int) -> None:
        for name, value in table.items():
            here = f"{where}.{name}"
            if isinstance(value, Mapping):
                if depth >= len(levels):
                    raise BandsError(f"{path}: [{here}] is nested too deep (levels: kind, "
                                     f"{', '.join(l for l, _ in levels)})")
                level, known = levels[depth]
                if known is not None and name != "*" and name not in known:
                    raise _unknown_name(path, here, level, name, known)
                check(value, here, depth + 1)
            elif name in ("rel", "abs"):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
                        or not math.isfinite(value):
                    raise BandsError(f"{path}: {here} must be a finite number >= 0, got {value!r}")
            elif name == "note":
                if not isinstance(value, str):
                    raise BandsError(f"{path}: {here} must be a string, got {value!r}")
            else:
                raise BandsError(f"{path}: unknown key {here} (a band table holds rel, abs and note; "
                                 "sub-tables name a stage, counter or convention, or \"*\")")

    for kind, value in tables.items():
        if kind == "schema":
            if value != BANDS_SCHEMA:
                raise BandsError(f"{path}: schema {value!r}, this harness reads schema {BANDS_SCHEMA}")
            continue
        if kind not in _KINDS:
            raise BandsError(f"{path}: unknown top-level table [{kind}]; expected [verify] or [regress]")
        if not isinstance(value, Mapping):
            raise BandsError(f"{path}: [{kind}] must be a table")
        check(value, kind, 0)


def load_bands(path: Path | str, *, stages: Iterable[str] | None = None,
               counters: Iterable[str] | None = None) -> Bands:
    """Read a tolerance TOML file; a missing file means every band is exact.

    ``stages`` / ``counters``: the names a table may use (besides ``"*"``); None accepts any
    name (a user's own model names its own stages).
    """
    path = Path(path)
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError as exc:  # pragma: no cover
            raise BandsError("reading tolerance bands on Python 3.10 needs the 'tomli' package "
                             "(pip install tomli)") from exc
    if path.is_dir():
        raise BandsError(f"{path} is a directory; the tolerance bands are a TOML file there. Move the "
                         "directory away (an absent file means every band is exact).")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Bands({}, path)
    except (OSError, UnicodeDecodeError) as exc:
        raise BandsError(f"{path} cannot be read: {exc}") from exc
    try:
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BandsError(f"{path}: not valid TOML: {exc}") from exc
    levels = (("stage", None if stages is None else frozenset(stages)),
              ("counter", None if counters is None else frozenset(counters)),
              ("convention", frozenset(CONVENTIONS)))
    _validate(tables, path, levels)
    return Bands(tables, path)
