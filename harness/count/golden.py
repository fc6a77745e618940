"""Goldens of ``harness.count`` results for users' own models (the engine of the ``flop_count`` fixture).

One JSON file per name, ``<root>/flop_count/<name>.json`` (kind ``harness.count``, schema 1), read,
compared, written and reported through the suite's golden engine (:mod:`harness.golden`); never
deleted. :mod:`.pytest_plugin` is its thin pytest shell. Format and rules: docs/count.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from harness.golden import (BAND_FIELDS, Band, Bands, GoldenError, GoldenStore, Mismatch, compare_entry,
                            dumps_golden, load_bands, write_atomic)
from harness.golden.store import FLOP_COUNT_KIND, OBTAINED_SUFFIX

__all__ = ["SCHEMA", "KIND", "SUBDIR", "CountGoldenError", "golden_name", "golden_file", "build_document",
           "load_document", "compare_documents", "write_document", "COMPARED_FIELDS", "bands_file",
           "read_bands"]

SCHEMA = 1
KIND = FLOP_COUNT_KIND
SUBDIR = "flop_count"
BANDS_NAME = "tolerances.toml"
COUNTERS = ("torch", "fvcore", "thop")
#: Fields compared within the band (the rest of an entry exactly, ``version`` not at all).
COMPARED_FIELDS = BAND_FIELDS | {"matmul_flops", "elementwise_flops"}
_NAME_OK = re.compile(r"[^A-Za-z0-9_.=+-]+")


#: A golden file of ``flop_count`` that cannot be used; the message names it and the fix (the
#: golden engine's error).
CountGoldenError = GoldenError


def golden_name(text: str) -> str:
    """A file-name-safe golden name: ``test_models.py::test_vit[meta]`` -> ``test_models.test_vit-meta``."""
    text = text.replace(".py::", ".").replace("::", ".").replace("[", "-").replace("]", "")
    name = _NAME_OK.sub("_", text).strip("._-")
    if not name:
        raise ValueError(f"golden name {text!r}: nothing file-name-safe left")
    return name


def golden_file(root: Path, name: str) -> Path:
    """``<root>/flop_count/<name>.json``."""
    if name != golden_name(name):
        raise ValueError(f"golden name {name!r}: use letters, digits and . _ = + - only "
                         f"(e.g. {golden_name(name)!r})")
    if (name + ".json").endswith(OBTAINED_SUFFIX):
        raise ValueError(f"golden name {name!r}: a name ending in '.obtained' is kept for obtained files")
    return Path(root) / SUBDIR / f"{name}.json"


def _environment() -> dict[str, str]:
    import importlib.metadata as md

    env = {}
    for dist in ("torch", "transformers", "fvcore", "ultralytics-thop"):
        try:
            env[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return env


def entry_of(count: Any) -> dict[str, Any]:
    """One counter's golden entry (a ``StageCount``)."""
    return {"raw": count.raw, "convention": count.convention, "flops": count.flops,
            "matmul_flops": count.matmul_flops, "elementwise_flops": count.elementwise_flops,
            "by_key": dict(sorted(count.by_key.items())), "uncounted_ops": dict(count.uncounted_matmul_ops),
            "complete": count.complete, "version": count.version}


def build_document(name: str, result: Any) -> dict[str, Any]:
    """The golden document of a :class:`~harness.count.CountResult`."""
    return {"schema": SCHEMA, "kind": KIND, "name": name, "model": result.model, "device": result.device,
            "environment": _environment(),
            "counts": {label: entry_of(c) for label, c in result.counts.items()},
            "missing": dict(result.missing)}


def load_document(store: GoldenStore, path: Path, regenerate: str) -> dict[str, Any] | None:
    """Read one golden through the golden engine's store; None when it does not exist;
    :class:`CountGoldenError` names the file and the regenerate command."""
    return store.load(path, KIND, regenerate=regenerate)


def unused_files(root: Path, asked: set[str]) -> list[Path]:
    """Goldens of ``<root>/flop_count/`` no test asked for (by name); obtained files are not goldens."""
    folder = Path(root) / SUBDIR
    return sorted(p for p in folder.glob("*.json")
                  if not p.name.endswith(OBTAINED_SUFFIX) and p.stem not in asked)


def bands_file(root: Path) -> Path:
    """``<root>/flop_count/tolerances.toml``: the bands of these goldens (apart from the suite's)."""
    return Path(root) / SUBDIR / BANDS_NAME


def read_bands(root: Path) -> Bands:
    """The bands of these goldens: ``[regress.<name>.<counter>.<convention>]``, ``"*"`` a
    wildcard at any level (a missing file: every band exact)."""
    return load_bands(bands_file(root), counters=COUNTERS)


def band_for(bands: Bands | None, name: str, label: str, convention: str, override: Band | None) -> Band:
    """The band of one counter: the call's own, else the most specific table of ``bands``."""
    if override is not None:
        return override
    if bands is None:
        return Band()
    return bands.lookup("regress", name, label.partition(" ")[0], convention)


def compare_documents(obtained: Mapping[str, Any], expected: Mapping[str, Any], *,
                      bands: Bands | None = None, override: Band | None = None
                      ) -> tuple[list[Mismatch], dict[str, Band]]:
    """Rows where the obtained counts differ from the golden, and the band used per counter."""
    rows: list[Mismatch] = []
    used: dict[str, Band] = {}
    name = str(obtained.get("name", "*"))
    got_counts, want_counts = obtained["counts"], expected["counts"]
    for label in sorted(set(got_counts) | set(want_counts), key=_label_order):
        if label not in want_counts:
            rows.append(Mismatch(f"{label}", got_counts[label]["flops"], None, "counter new"))
            continue
        if label not in got_counts:
            why = obtained.get("missing", {}).get(label, "not run")
            rows.append(Mismatch(f"{label}", None, want_counts[label].get("flops"), f"counter gone: {why}"))
            continue
        band = used[label] = band_for(bands, name, label, str(got_counts[label].get("convention")), override)
        for row in compare_entry(got_counts[label], want_counts[label], band, band_fields=COMPARED_FIELDS):
            rows.append(Mismatch(f"{label}: {row.field}", row.obtained, row.expected, row.note))
    return rows, used


def _label_order(label: str) -> tuple[int, int, str]:
    counters = ("torch", "fvcore", "thop")
    counter, _, variant = label.partition(" ")
    return (counters.index(counter) if counter in counters else 9,
            0 if variant == "stock" else 1, label)


def environment_diff(obtained: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """Lines naming each package whose version differs from the golden's."""
    got, want = obtained.get("environment", {}), expected.get("environment", {})
    return [f"environment: {k} {want.get(k, '-')} in the golden, {got.get(k, '-')} here"
            for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)]


def write_document(path: Path, doc: Mapping[str, Any]) -> bool:
    """Write atomically; False when the file already holds exactly this text."""
    return write_atomic(path, dumps_golden(doc))
