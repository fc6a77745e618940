"""The golden bookkeeping of one pytest run: checks, records, the final write and the summary.

One :class:`GoldenSession` lives in every pytest process. In a test, :meth:`GoldenSession.check`
compares an obtained entry with its golden (normal run) or records it (``--update-golden``).
The process that owns the terminal (the only one without xdist, the controller with it) learns
every collected golden key from the test reports (``("harness_golden", key)`` in
``user_properties``, skipped tests included), receives the records of the xdist workers, and at
the end writes each golden file once (one writer per file), atomically, and reports goldens
written, unchanged and unused.

Unused goldens (files or entries no collected test maps to) are deleted only by
``--update-golden`` on a full run: no ``-k``/``-m``/``--deselect``, no explicit paths, no harness
selection option, nothing deselected, no collection error, no early stop. A skipped test keeps
its golden (syrupy's rule: the CPU run that skips the GPU and vendor tests must not delete
their goldens).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.golden import (
    TEMP_SUFFIX,
    Band,
    Bands,
    GoldenError,
    GoldenKey,
    compare_entry,
    dumps_golden,
    format_mismatch,
    golden_path,
    iter_entries,
    load_bands,
    load_golden,
    merge_entries,
    write_atomic,
)

#: ``user_properties`` name under which an item carries its golden key.
PROPERTY = "harness_golden"
#: ``workeroutput`` key of an xdist worker's records and deselection count.
WORKER_OUTPUT = "harness_goldens"
#: How many names the terminal summary lists per category before "and N more".
SUMMARY_LIMIT = 10


@dataclass
class FileRecord:
    """What this run produced for one golden file."""

    layout: Any = None
    environment: dict[str, Any] = field(default_factory=dict)
    entries: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"layout": self.layout, "environment": self.environment,
                "entries": [[s, c, e] for (s, c), e in sorted(self.entries.items())]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "FileRecord":
        return cls(data["layout"], dict(data["environment"]),
                   {(s, c): e for s, c, e in data["entries"]})


def regenerate_command(config: pytest.Config, nodeid: str | None) -> str:
    """The exact command that regenerates the golden of ``nodeid`` (or all goldens)."""
    words = ["pytest"]
    device = config.getoption("harness_device", None)
    if device:
        words += ["--device", device]
    model_path = config.getoption("harness_model_path", None)
    if model_path:
        words += ["--model-path", model_path]
    if config.getoption("harness_trust_remote_code", False):
        words.append("--trust-remote-code")
    golden_dir = config.getoption("harness_golden_dir", None)
    if golden_dir:
        words += ["--golden-dir", golden_dir]
    words.append("--update-golden")
    if nodeid:
        words.append(nodeid)
    return shlex.join(words)


class GoldenSession:
    """Checks and records goldens in one pytest process; writes them at the end of the run."""

    def __init__(self, config: pytest.Config, root: Path, bands_path: Path) -> None:
        self.config = config
        self.root = Path(root)
        self.bands_path = Path(bands_path)
        self.update: bool = bool(config.getoption("harness_update_golden", False))
        self._bands: Bands | None = None
        self._docs: dict[Path, dict[str, Any] | GoldenError | None] = {}
        self.records: dict[tuple[str, str, str], FileRecord] = {}
        # terminal-owning process only
        self.reported: dict[str, str] = {}          # golden key -> outcome ("passed", "skipped", ...)
        self.deselected = 0
        self.collect_errors = 0
        self.worker_failures = 0
        self.written: list[Path] = []
        self.unchanged: list[Path] = []
        self.replaced_corrupt: list[Path] = []
        self.unused_files: list[Path] = []
        self.unused_entries: list[str] = []
        self.deleted = False
        self.not_full_reasons: list[str] = []
        self.errors: list[str] = []

    # ----------------------------------------------------------------------------- bands
    @property
    def bands(self) -> Bands:
        """The tolerance bands (read once)."""
        if self._bands is None:
            self._bands = load_bands(self.bands_path)
        return self._bands

    def band(self, kind: str, stage: str, counter: str, *more: str) -> Band:
        """The band of ``(kind, stage, counter[, convention])``."""
        return self.bands.lookup(kind, stage, counter, *more)

    # ----------------------------------------------------------------------------- reading
    def path_for(self, key: GoldenKey) -> Path:
        return golden_path(self.root, *key.file_key)

    def display_path(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.config.rootpath))
        except ValueError:
            return str(path)

    def load(self, path: Path, nodeid: str | None = None) -> dict[str, Any] | None:
        """The golden document at ``path`` (cached), None if absent; raises GoldenError if corrupt."""
        if path not in self._docs:
            try:
                self._docs[path] = load_golden(path, regenerate=regenerate_command(self.config, nodeid),
                                               display=self.display_path(path))
            except FileNotFoundError:
                self._docs[path] = None
            except GoldenError as exc:
                self._docs[path] = exc
        doc = self._docs[path]
        if isinstance(doc, GoldenError):
            # re-raise with the command of this test
            raise GoldenError(str(doc).rsplit("\nTo regenerate it, run:", 1)[0]
                              + f"\nTo regenerate it, run:\n  {regenerate_command(self.config, nodeid)}")
        return doc

    def read(self, key: GoldenKey, nodeid: str | None = None, *,
             command: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(entry, document)`` of ``key``; fails the test with the fix if missing or corrupt.

        ``command``: the fix to print, when another test (or environment) makes this golden.
        """
        __tracebackhide__ = True
        path = self.path_for(key)
        shown = self.display_path(path)
        try:
            doc = self.load(path, nodeid)
        except GoldenError as exc:
            if command is not None:
                text = str(exc).rsplit("\nTo regenerate it, run:", 1)[0]
                pytest.fail(f"{text}\nTo regenerate it, run:\n  {command}", pytrace=False)
            pytest.fail(str(exc), pytrace=False)
        command = command or regenerate_command(self.config, nodeid)
        if doc is None:
            pytest.fail(f"golden {key}: no golden file {shown}.\nTo create it, run:\n  {command}",
                        pytrace=False)
        entry = doc["stages"].get(key.stage, {}).get(key.counter)
        if entry is None:
            have = ", ".join(f"{s}/{c}" for s, by in sorted(doc["stages"].items()) for c in sorted(by))
            pytest.fail(f"golden {key}: could not find stage {key.stage!r} counter {key.counter!r} in "
                        f"{shown} (it has: {have or 'nothing'}).\nTo create it, run:\n  {command}",
                        pytrace=False)
        return entry, doc

    # ----------------------------------------------------------------------------- checking
    def check(self, key: GoldenKey, entry: Mapping[str, Any], *, layout: Any = None,
              environment: Mapping[str, Any] | None = None, nodeid: str | None = None,
              band: Band | None = None) -> None:
        """Compare ``entry`` with the golden of ``key`` (or record it under --update-golden)."""
        __tracebackhide__ = True
        entry = json.loads(dumps_golden(entry))      # what the file would hold
        layout = json.loads(dumps_golden({"v": layout}))["v"]
        env = dict(environment or {})
        if self.update:
            record = self.records.setdefault(key.file_key, FileRecord(layout, env))
            if record.layout != layout:
                raise GoldenError(f"golden {key}: two tests of page {key.page!r} give different layouts "
                                  f"({record.layout!r} vs {layout!r})")
            record.environment.update(env)
            record.entries[(key.stage, key.counter)] = entry
            return
        expected, doc = self.read(key, nodeid)
        if band is None:
            band = self.band("regress", key.stage, key.counter, str(entry.get("convention", "")))
        rows = compare_entry(entry, expected, band)
        if layout is not None and doc.get("layout") is not None and layout != doc["layout"]:
            rows += _layout_rows(layout, doc["layout"])
        if rows:
            context = _environment_context(env, doc.get("environment") or {})
            pytest.fail(format_mismatch(f"golden {key}: measured counts differ from the golden.",
                                        rows, band=band, path=Path(self.display_path(self.path_for(key))),
                                        regenerate=regenerate_command(self.config, nodeid),
                                        context=context), pytrace=False)

    # ----------------------------------------------------------------------- controller side
    def add_worker_output(self, data: Mapping[str, Any]) -> None:
        """Merge what an xdist worker recorded (called on the controller)."""
        for file_key, rec in data.get("records", []):
            incoming = FileRecord.from_json(rec)
            mine = self.records.setdefault(tuple(file_key), FileRecord(incoming.layout, {}))
            mine.environment.update(incoming.environment)
            mine.entries.update(incoming.entries)
        # every worker collects (and deselects) the whole suite: take one worker's figure
        self.deselected = max(self.deselected, int(data.get("deselected", 0)))
        self.collect_errors = max(self.collect_errors, int(data.get("collect_errors", 0)))

    def worker_output(self) -> str:
        """This worker's records, as JSON for ``workeroutput``."""
        return json.dumps({"records": [[list(k), r.to_json()] for k, r in sorted(self.records.items())],
                           "deselected": self.deselected, "collect_errors": self.collect_errors})

    def full_run_reasons(self, session: pytest.Session) -> list[str]:
        """Why this run is not a full, unfiltered one (empty: it is)."""
        config = self.config
        reasons = []
        if config.option.keyword:
            reasons.append("-k")
        if config.option.markexpr:
            reasons.append("-m")
        if getattr(config.option, "deselect", None):
            reasons.append("--deselect")
        if config.args_source == pytest.Config.ArgsSource.ARGS:
            reasons.append("explicit test paths")
        for dest, flag in (("harness_target", "--target"), ("harness_mode", "--mode"),
                           ("harness_page", "--page"), ("harness_stage", "--stage"),
                           ("harness_counter", "--counter"), ("harness_page_set", "--page-set")):
            if config.getoption(dest, None):
                reasons.append(flag)
        if self.deselected:
            reasons.append(f"{self.deselected} deselected")
        if self.collect_errors:
            reasons.append("collection errors")
        if self.worker_failures:
            reasons.append("an xdist worker crashed")
        if session.shouldstop or session.shouldfail:
            reasons.append("stopped early")
        if session.exitstatus == pytest.ExitCode.INTERRUPTED:
            reasons.append("interrupted")
        return reasons

    def finish(self, session: pytest.Session) -> None:
        """Write the recorded goldens, find (and on a full update run delete) the unused ones."""
        self.not_full_reasons = self.full_run_reasons(session)
        full = not self.not_full_reasons
        reported_by_file: dict[tuple[str, str, str], set[tuple[str, str]]] = {}
        for text in self.reported:
            key = GoldenKey.parse(text)
            reported_by_file.setdefault(key.file_key, set()).add((key.stage, key.counter))
        if full:
            self._find_unused(reported_by_file)
        rewritten: set[Path] = set()
        if self.update:
            self._remove_leftover_temp_files()
            for file_key, record in sorted(self.records.items()):
                path = golden_path(self.root, *file_key)
                try:
                    old = load_golden(path)
                except FileNotFoundError:
                    old = None
                except GoldenError:
                    old = None
                    self.replaced_corrupt.append(path)
                # on a full run, entries no collected test maps to are dropped (reported unused)
                keep = reported_by_file.get(file_key, set()) if full else None
                doc = merge_entries(old, file_key, layout=record.layout,
                                    environment=record.environment, entries=record.entries, keep=keep)
                try:
                    changed = write_atomic(path, dumps_golden(doc))
                except OSError as exc:
                    self.errors.append(f"could not write {path}: {exc}")
                    continue
                (self.written if changed else self.unchanged).append(path)
                rewritten.add(path)
        if self.update and full and (self.unused_files or self.unused_entries):
            for path in self.unused_files:
                path.unlink(missing_ok=True)
                _remove_empty_parents(path.parent, self.root)
            for text in self.unused_entries:
                key = GoldenKey.parse(text)
                path = golden_path(self.root, *key.file_key)
                if path in rewritten:
                    continue
                try:
                    doc = load_golden(path)
                except (GoldenError, OSError):
                    continue
                doc["stages"].get(key.stage, {}).pop(key.counter, None)
                if not doc["stages"].get(key.stage, True):
                    del doc["stages"][key.stage]
                write_atomic(path, dumps_golden(doc))
            self.deleted = True

    def _remove_leftover_temp_files(self) -> None:
        """Temporary files a crashed write left behind (``.<name>.json.<random>.tmp``)."""
        for path in self.root.glob("*/*/.*.json.*" + TEMP_SUFFIX):
            path.unlink(missing_ok=True)

    def _find_unused(self, reported_by_file: Mapping[tuple[str, str, str], set[tuple[str, str]]]) -> None:
        """Golden files and entries that no collected test maps to (full runs only)."""
        for path in sorted(self.root.glob("*/*/*.json")):
            try:
                doc = load_golden(path)
            except (GoldenError, OSError):
                continue
            file_key = (doc["target"], doc["mode"], doc["page"])
            if path != golden_path(self.root, *file_key):
                continue        # a misplaced file: not ours to judge
            unused = [str(k) for k in iter_entries(doc) if str(k) not in self.reported]
            if file_key not in reported_by_file:
                self.unused_files.append(path)
            elif unused:
                self.unused_entries.extend(unused)

    def summary_lines(self) -> list[str]:
        """The terminal summary of goldens written, unchanged and unused."""
        lines: list[str] = []
        show = self.display_path
        if self.update:
            lines.append(f"{len(self.written)} golden file(s) written, {len(self.unchanged)} unchanged"
                         + (f", {len(self.replaced_corrupt)} corrupt file(s) replaced"
                            if self.replaced_corrupt else ""))
            lines += [f"  written: {show(p)}" for p in self.written[:SUMMARY_LIMIT]]
            if len(self.written) > SUMMARY_LIMIT:
                lines.append(f"  ... and {len(self.written) - SUMMARY_LIMIT} more")
        unused = [show(p) for p in self.unused_files] + self.unused_entries
        if self.update and self.not_full_reasons:
            lines.append(f"unused goldens not checked and none deleted: not a full run "
                         f"({', '.join(self.not_full_reasons)})")
        if unused:
            if self.deleted:
                head = f"{len(unused)} unused golden(s) deleted"
            else:
                head = (f"{len(unused)} unused golden(s) (no collected test maps to them); "
                        "`pytest --update-golden` on a full run deletes them")
            lines.append(head)
            lines += [f"  unused: {name}" for name in unused[:SUMMARY_LIMIT]]
            if len(unused) > SUMMARY_LIMIT:
                lines.append(f"  ... and {len(unused) - SUMMARY_LIMIT} more")
        lines += [f"ERROR: {e}" for e in self.errors]
        return lines


def _remove_empty_parents(directory: Path, root: Path) -> None:
    while directory != root and directory.is_dir() and root in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for name in sorted(value):
            out.update(_flatten(value[name], f"{prefix}.{name}"))
        return out
    return {prefix: value}


def _layout_rows(obtained: Any, expected: Any):
    from harness.golden import Mismatch

    got, want = _flatten(obtained, "layout"), _flatten(expected, "layout")
    return [Mismatch(name, got.get(name), want.get(name), "layout changed")
            for name in sorted(set(got) | set(want)) if got.get(name) != want.get(name)]


def _environment_context(obtained: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    diffs = [f"  {name}: golden {expected.get(name)!r}, now {obtained.get(name)!r}"
             for name in sorted(set(obtained) | set(expected))
             if name in obtained and obtained.get(name) != expected.get(name)]
    return (["environment differs from the one that made the golden:"] + diffs) if diffs else []
