"""Goldens and tolerance bands: the files, their keys, the comparison and its failure message.

A golden is one JSON file per ``(target, mode, page)``, ``golden/<target>/<mode>/<page>.json``::

    {
      "schema": 1,
      "target": "ocr2", "mode": "base", "page": "letter",
      "layout": {...},                      # views, grid, tokens of the page (workload)
      "environment": {...},                 # versions, device, dtype, implementations
      "stages": {"sam": {"torch": {"raw": ..., "convention": "flop", "flops": ...,
                                   "by_op": {...}, "unknown_ops": {...}, ...}}}
    }

One entry per ``(stage, counter)``; its key, ``<target>-<mode>-<page>-<stage>-<counter>``, is
also the test id. The JSON is deterministic (sorted keys, two-space indent, floats rounded to 12
significant digits, no timestamps), so deleting a golden and regenerating it on the same
environment gives the same bytes. Files are written atomically (temporary file in the same
directory, ``fsync``, ``os.replace``): a crash leaves the previous golden.

Tolerance bands live in one hand-edited TOML file (``golden/tolerances.toml``) that
``--update-golden`` never writes, so regenerating can never widen a band. A band allows
``|obtained - expected| <= abs + rel * |expected|``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "SCHEMA_VERSION",
    "GoldenError",
    "GoldenKey",
    "Band",
    "Bands",
    "BandsError",
    "load_bands",
    "golden_path",
    "dumps_golden",
    "write_atomic",
    "load_golden",
    "new_golden",
    "merge_entries",
    "iter_entries",
    "compare_entry",
    "Mismatch",
    "format_mismatch",
    "BAND_FIELDS",
    "INFO_FIELDS",
]

#: Bumped when the layout of a golden file changes; a file with another schema is an error that
#: names the regenerate command.
SCHEMA_VERSION = 1
#: Significant digits kept for floats in goldens (stable across platforms' float printing).
FLOAT_DIGITS = 12
#: Entry fields that carry FLOP figures: compared within the (stage, counter) band.
BAND_FIELDS = frozenset({"raw", "flops", "by_op", "by_key"})
#: Entry fields that are information, not expectations (never compared).
INFO_FIELDS = frozenset({"version", "note", "notes"})
#: Suffix of the temporary files of :func:`write_atomic` (never read as goldens).
TEMP_SUFFIX = ".tmp"


class GoldenError(Exception):
    """A golden file that cannot be used (unreadable, not JSON, wrong schema, wrong key)."""


class BandsError(Exception):
    """A tolerance-band file that cannot be used."""


# --------------------------------------------------------------------------------------- keys
@dataclass(frozen=True, order=True)
class GoldenKey:
    """``<target>-<mode>-<page>-<stage>-<counter>``: a test id and the address of one entry.

    Target, mode, stage and counter never contain ``-``; a page name may, so the key parses
    unambiguously as two fields, the page, then two fields.
    """

    target: str
    mode: str
    page: str
    stage: str
    counter: str

    def __post_init__(self) -> None:
        for name in ("target", "mode", "stage", "counter"):
            value = getattr(self, name)
            if not value or "-" in value or "/" in value:
                raise ValueError(f"GoldenKey.{name}: expected a non-empty name without '-' or '/', "
                                 f"got {value!r}")
        if not self.page or "/" in self.page or self.page.startswith("."):
            raise ValueError(f"GoldenKey.page: expected a file-name-safe page name, got {self.page!r}")

    def __str__(self) -> str:
        return f"{self.target}-{self.mode}-{self.page}-{self.stage}-{self.counter}"

    @classmethod
    def parse(cls, text: str) -> "GoldenKey":
        """Parse ``<target>-<mode>-<page>-<stage>-<counter>``."""
        parts = text.split("-")
        if len(parts) < 5:
            raise ValueError(f"golden key {text!r}: expected <target>-<mode>-<page>-<stage>-<counter>")
        return cls(parts[0], parts[1], "-".join(parts[2:-2]), parts[-2], parts[-1])

    @property
    def file_key(self) -> tuple[str, str, str]:
        """``(target, mode, page)``: which golden file holds this entry."""
        return (self.target, self.mode, self.page)


def golden_path(root: Path, target: str, mode: str, page: str) -> Path:
    """``<root>/<target>/<mode>/<page>.json``."""
    return Path(root) / target / mode / f"{page}.json"


# ---------------------------------------------------------------------------------------- IO
def _stable(value: Any, where: str) -> Any:
    """A JSON-ready copy with floats rounded to :data:`FLOAT_DIGITS` significant digits."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"golden value at {where}: {value!r} is not a finite number")
        return float(f"{value:.{FLOAT_DIGITS}g}")
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"golden value at {where}: keys must be strings, got {key!r}")
            out[key] = _stable(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_stable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(f"golden value at {where}: {type(value).__name__} is not JSON data")


def dumps_golden(data: Mapping[str, Any]) -> str:
    """Deterministic JSON text: sorted keys, indent 2, stable floats, trailing newline."""
    return json.dumps(_stable(data, "$"), sort_keys=True, indent=2, ensure_ascii=False,
                      allow_nan=False) + "\n"


def write_atomic(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically; return False (and touch nothing) if unchanged.

    The text goes to a temporary file in the same directory, is flushed and fsync-ed, then
    ``os.replace``-d over the target: a reader (or a crash) sees the old file or the new one,
    never a partial one. A failed write removes its temporary file.
    """
    path = Path(path)
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return True


def new_golden(target: str, mode: str, page: str) -> dict[str, Any]:
    """An empty golden document for one page."""
    return {"schema": SCHEMA_VERSION, "target": target, "mode": mode, "page": page,
            "layout": None, "environment": {}, "stages": {}}


def load_golden(path: Path, *, regenerate: str = "pytest --update-golden",
                display: str | None = None) -> dict[str, Any]:
    """Read and validate one golden file; :class:`GoldenError` names the file and the fix.

    ``regenerate`` is the command printed in the error, ``display`` the file name shown.
    """
    path = Path(path)
    shown = display or str(path)
    fix = f"\nTo regenerate it, run:\n  {regenerate}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise GoldenError(f"golden file {shown} cannot be read: {exc}{fix}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GoldenError(f"golden file {shown} is not valid JSON (line {exc.lineno}, column "
                          f"{exc.colno}: {exc.msg}); it may be truncated or hand-edited.{fix}") from exc
    if not isinstance(data, dict):
        raise GoldenError(f"golden file {shown}: expected a JSON object, got {type(data).__name__}.{fix}")
    schema = data.get("schema")
    if schema != SCHEMA_VERSION:
        raise GoldenError(f"golden file {shown}: schema {schema!r}, this harness reads schema "
                          f"{SCHEMA_VERSION}.{fix}")
    stages = data.get("stages")
    if not isinstance(stages, dict) or not all(
            isinstance(by_counter, dict) and all(isinstance(e, dict) for e in by_counter.values())
            for by_counter in stages.values()):
        raise GoldenError(f"golden file {shown}: 'stages' must map stage -> counter -> entry "
                          f"objects.{fix}")
    for name in ("target", "mode", "page"):
        if not isinstance(data.get(name), str):
            raise GoldenError(f"golden file {shown}: missing string field {name!r}.{fix}")
    return data


def iter_entries(doc: Mapping[str, Any]) -> Iterable[GoldenKey]:
    """The keys of every entry of a golden document, in sorted order."""
    for stage in sorted(doc.get("stages", {})):
        for counter in sorted(doc["stages"][stage]):
            yield GoldenKey(doc["target"], doc["mode"], doc["page"], stage, counter)


def merge_entries(old: Mapping[str, Any] | None, key: tuple[str, str, str], *,
                  layout: Any, environment: Mapping[str, Any],
                  entries: Mapping[tuple[str, str], Mapping[str, Any]],
                  keep: Iterable[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The new document of one page: ``entries`` over the old ones.

    ``keep``: which old ``(stage, counter)`` entries survive (None: all of them). The layout and
    environment are those of this run.
    """
    doc = new_golden(*key)
    doc["layout"] = layout
    doc["environment"] = dict(environment)
    stages: dict[str, dict[str, Any]] = {}
    if old is not None:
        keep_set = None if keep is None else set(keep)
        for stage, by_counter in old.get("stages", {}).items():
            for counter, entry in by_counter.items():
                if keep_set is None or (stage, counter) in keep_set:
                    stages.setdefault(stage, {})[counter] = entry
    for (stage, counter), entry in entries.items():
        stages.setdefault(stage, {})[counter] = dict(entry)
    doc["stages"] = stages
    return doc


# ------------------------------------------------------------------------------------ bands
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
_BAND_KEYS = {"rel", "abs", "note"}


@dataclass
class Bands:
    """The tolerance tables of one TOML file, looked up most-specific-first.

    ``[<kind>.<stage>.<counter>.<convention>]`` with ``"*"`` as a wildcard at any level; missing
    deeper levels mean "any". ``kind`` is ``verify`` (analytic vs measured, after the delta
    explanation) or ``regress`` (measured vs golden). Without a matching table the band is exact.
    """

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


def _validate_bands(tables: Mapping[str, Any], path: Path) -> None:
    def check(table: Mapping[str, Any], where: str) -> None:
        for name, value in table.items():
            here = f"{where}.{name}"
            if isinstance(value, Mapping):
                check(value, here)
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
            if value != 1:
                raise BandsError(f"{path}: schema {value!r}, this harness reads schema 1")
            continue
        if kind not in ("verify", "regress"):
            raise BandsError(f"{path}: unknown top-level table [{kind}]; expected [verify] or [regress]")
        if not isinstance(value, Mapping):
            raise BandsError(f"{path}: [{kind}] must be a table")
        check(value, kind)


def load_bands(path: Path) -> Bands:
    """Read a tolerance TOML file; a missing file means every band is exact."""
    path = Path(path)
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError as exc:  # pragma: no cover
            raise BandsError("reading tolerance bands on Python 3.10 needs the 'tomli' package "
                             "(pip install tomli)") from exc
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Bands({}, path)
    try:
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BandsError(f"{path}: not valid TOML: {exc}") from exc
    _validate_bands(tables, path)
    return Bands(tables, path)


# ------------------------------------------------------------------------------- comparison
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
    fields in ``info_fields`` not at all.
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
        elif got != want:
            rows.append(Mismatch(name, got, want))
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.6g}"
    text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
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
                    path: Path | None = None, regenerate: str | None = None,
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
