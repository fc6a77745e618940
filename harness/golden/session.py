"""The golden bookkeeping of one pytest run: checks, records, the final write, unused and prune.

One :class:`GoldenSession` lives in every pytest process: :meth:`check_layout` and
:meth:`check_count` compare with the golden (or record under ``--update-golden``); the process
that owns the terminal writes each golden once at the end, under the update lock, and decides
what is unused and what ``--prune-golden`` may delete. The safety rules: golden/README.md.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.golden.bands import Band, Bands, load_bands
from harness.golden.compare import Mismatch, compare_entry, compare_values, format_mismatch
from harness.golden.store import (
    OBTAINED_SUFFIX,
    SCHEMA_VERSION,
    GoldenError,
    GoldenStore,
    UpdateLock,
    count_path,
    dumps_golden,
    facts,
    iter_golden_files,
    layout_path,
    load_doc,
    migrate_legacy,
    obtained_path,
    sweep_temp_files,
    without_legacy,
    write_atomic,
)

__all__ = ["GoldenSession", "Expected", "PROPERTY", "WORKER_OUTPUT", "layout_address", "count_address",
           "regenerate_command"]

#: ``user_properties`` name under which an item carries its golden address.
PROPERTY = "harness_golden"
#: ``workeroutput`` key of an xdist worker's records.
WORKER_OUTPUT = "harness_goldens"
#: How many names the terminal summary lists per category before "and N more".
SUMMARY_LIMIT = 10


def layout_address(target: str, mode: str, page: str) -> str:
    return f"layout:{target}-{mode}-{page}"


def count_address(target: str, stage: str, counter: str, key: str) -> str:
    return f"count:{target}-{stage}-{counter}-{key}"


@dataclass
class Expected:
    """What the suite definition expects, independent of what this run selected or can run.

    ``layouts``: ``(target, mode) -> page ids``; ``counts``: ``(target, stage, shape key) ->
    (shape, counters)``. Which pages reach a key is the layouts' fact, not the counts'.
    """

    layouts: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    counts: dict[tuple[str, str, str], tuple[dict[str, Any], tuple[str, ...]]] = field(default_factory=dict)

    def addresses(self, target: str) -> set[str]:
        out = {layout_address(t, m, p) for (t, m), pages in self.layouts.items() if t == target for p in pages}
        out |= {count_address(t, s, c, k) for (t, s, k), (_, counters) in self.counts.items()
                if t == target for c in counters}
        return out

    @property
    def targets(self) -> set[str]:
        return {t for t, _ in self.layouts} | {t for t, _, _ in self.counts}


def regenerate_command(config: pytest.Config, nodeid: str | None, *, flag: str = "--update-golden") -> str:
    """The exact command that regenerates the golden of ``nodeid`` (or all goldens).

    Options with a value are written ``--opt=value``: pytest reads a separate word that names an
    existing directory (a golden or model directory outside the project) as a test path when it
    looks for the rootdir, and would then run with another rootdir and configuration.
    """
    words = ["pytest"]
    for dest, opt in (("harness_device", "--device"), ("harness_model_path", "--model-path"),
                      ("harness_golden_dir", "--golden-dir")):
        value = config.getoption(dest, None)
        if value:
            words.append(f"{opt}={value}")
    if config.getoption("harness_trust_remote_code", False):
        words.append("--trust-remote-code")
    words.append(flag)
    if nodeid:
        words.append(nodeid)
    return shlex.join(words)


@dataclass
class _CountRecord:
    shape: dict[str, Any]
    environment: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, dict[str, Any]] = field(default_factory=dict)


class GoldenSession:
    """Checks and records goldens in one pytest process; writes them at the end of the run."""

    def __init__(self, config: pytest.Config, root: Path, bands_path: Path, *,
                 expected: Callable[[], Expected] | None = None,
                 stages: Iterable[str] | None = None, counters: Iterable[str] | None = None) -> None:
        self.config = config
        self.root = Path(root)
        self.bands_path = Path(bands_path)
        self.update: bool = bool(config.getoption("harness_update_golden", False))
        self.prune: bool = bool(config.getoption("harness_prune_golden", False))
        self._expected_factory = expected
        self._expected: Expected | None = None
        self._band_names = (None if stages is None else tuple(stages),
                            None if counters is None else tuple(counters))
        self._bands: Bands | None = None
        self.store = GoldenStore(self.root, base=config.rootpath)
        self.lock = UpdateLock(self.root)
        self.layout_records: dict[tuple[str, str], dict[str, Any]] = {}   # (target, mode) -> {text_tokens, pages}
        self.count_records: dict[tuple[str, str, str], _CountRecord] = {}
        # terminal-owning process only
        self.reported: dict[str, str] = {}
        self.collect_errors = 0
        self.worker_failures = 0
        self.written: list[Path] = []
        self.unchanged: list[Path] = []
        self.env_only: list[tuple[Path, list[str]]] = []
        self.env_seen: dict[str, tuple[Any, Any]] = {}
        self.replaced_corrupt: list[Path] = []
        self.unused: list[str] = []
        self.pruned: list[str] = []
        self.prune_refused: list[str] = []
        self.swept: list[Path] = []
        self.migrated: list[Path] = []
        self.errors: list[str] = []
        #: golden path -> what this process obtained where it differs (written at the end, by the
        #: terminal-owning process): {"kind", "layout": {page: row}, "text_tokens", "counters":
        #: {counter: entry}, "shape", "environment", "differs": [addresses]}
        self.obtained: dict[str, dict[str, Any]] = {}
        self.obtained_written: list[Path] = []
        self.obtained_removed: list[Path] = []
        self.obtained_problems: list[str] = []

    # ----------------------------------------------------------------------------- basics
    @property
    def bands(self) -> Bands:
        """The tolerance bands (read once; stage and counter names validated)."""
        if self._bands is None:
            stages, counters = self._band_names
            self._bands = load_bands(self.bands_path, stages=stages, counters=counters)
        return self._bands

    @property
    def expected(self) -> Expected:
        if self._expected is None:
            self._expected = self._expected_factory() if self._expected_factory else Expected()
        return self._expected

    @property
    def writes(self) -> bool:
        return self.update or self.prune

    def display_path(self, path: Path) -> str:
        return self.store.display(path)

    def _load(self, path: Path, kind: str, nodeid: str | None) -> dict[str, Any] | None:
        """The golden document at ``path`` (cached), None if absent; GoldenError if corrupt."""
        return self.store.load(path, kind, regenerate=lambda: regenerate_command(self.config, nodeid))

    def _obtained_note(self, path: Path, address: str, update: Callable[[dict[str, Any]], None]) -> str:
        """Record what this run obtained for ``address`` of the golden at ``path`` (written beside
        it at the end of the run); the line of the failure message that names the file."""
        rec = self.obtained.setdefault(str(path), {"differs": []})
        update(rec)
        if address not in rec["differs"]:
            rec["differs"].append(address)
        return (f"obtained: {self.display_path(obtained_path(path))} (written when the run ends: the golden "
                "with this run's values; diff the two)")

    def _fail(self, message: str) -> None:
        __tracebackhide__ = True
        pytest.fail(message, pytrace=False)

    def _env_context(self, obtained: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
        diffs = []
        for name in sorted(set(obtained) | set(expected)):
            if name in obtained and obtained.get(name) != expected.get(name):
                diffs.append(f"  {name}: golden {expected.get(name)!r}, now {obtained.get(name)!r}")
                self.env_seen.setdefault(name, (expected.get(name), obtained.get(name)))
        return (["environment differs from the one that made the golden:"] + diffs) if diffs else []

    # ----------------------------------------------------------------------------- layouts
    def check_layout(self, target: str, mode: str, page: str, record: Mapping[str, Any], *,
                     text_tokens: int, nodeid: str | None = None) -> None:
        """Compare one page's layout with its row in ``<target>/layout/<mode>.json`` (or record it)."""
        __tracebackhide__ = True
        record = json.loads(dumps_golden(record))
        if self.update:
            rec = self.layout_records.setdefault((target, mode), {"text_tokens": text_tokens, "pages": {}})
            rec["pages"][page] = record
            return
        path = layout_path(self.root, target, mode)
        command = regenerate_command(self.config, nodeid)
        try:
            doc = self._load(path, "layout", nodeid)
        except GoldenError as exc:
            self._fail(str(exc))
        if doc is None or page not in doc["pages"]:
            self._fail(f"layout golden {target}-{mode}-{page}: "
                       f"{'no golden file ' + self.display_path(path) if doc is None else 'no row for this page in ' + self.display_path(path)}."
                       f"\nTo create it, run:\n  {command}")
        rows = compare_values("layout", record, doc["pages"][page])
        if doc.get("text_tokens") != text_tokens:
            rows.append(Mismatch("text_tokens", text_tokens, doc.get("text_tokens")))
        if rows:
            def put(rec: dict[str, Any]) -> None:
                rec.setdefault("layout", {})[page] = record
                rec["text_tokens"] = text_tokens
            note = self._obtained_note(path, layout_address(target, mode, page), put)
            self._fail(format_mismatch(f"layout golden {target}-{mode}-{page}: the page's layout differs from "
                                       "the golden.", rows, path=self.display_path(path), regenerate=command,
                                       context=[note]))

    # ----------------------------------------------------------------------------- counts
    def read_count(self, target: str, stage: str, key: str, counter: str, *, nodeid: str | None = None,
                   command: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(entry, document)`` of one counter's count golden; fails the test with the fix if absent."""
        __tracebackhide__ = True
        path = count_path(self.root, target, stage, key)
        command = command or regenerate_command(self.config, nodeid)
        try:
            doc = self._load(path, "count", nodeid)
        except GoldenError as exc:
            self._fail(str(exc).rsplit("\nTo regenerate it, run:", 1)[0] + f"\nTo regenerate it, run:\n  {command}")
        if doc is None:
            self._fail(f"count golden {target}-{stage}-{counter}-{key}: no golden file "
                       f"{self.display_path(path)}.\nTo create it, run:\n  {command}")
        entry = doc["counters"].get(counter)
        if entry is None:
            self._fail(f"count golden {target}-{stage}-{counter}-{key}: {self.display_path(path)} has no entry "
                       f"for counter {counter!r} (it has: {', '.join(sorted(doc['counters'])) or 'nothing'})."
                       f"\nTo create it, run:\n  {command}")
        return entry, doc

    def has_count(self, target: str, stage: str, key: str, counter: str) -> bool:
        try:
            doc = self._load(count_path(self.root, target, stage, key), "count", None)
        except GoldenError:
            return False
        return doc is not None and counter in doc["counters"]

    def check_count(self, target: str, stage: str, counter: str, key: str, entry: Mapping[str, Any], *,
                    shape: Mapping[str, Any], environment: Mapping[str, Any],
                    nodeid: str | None = None, band: Band | None = None) -> None:
        """Compare one counter's count at one shape key with its golden (or record it)."""
        __tracebackhide__ = True
        entry = json.loads(dumps_golden(entry))
        shape = json.loads(dumps_golden(shape))
        env = json.loads(dumps_golden(environment))
        if self.update:
            rec = self.count_records.setdefault((target, stage, key), _CountRecord(shape))
            rec.environment.update(env)
            rec.counters[counter] = entry
            return
        expected, doc = self.read_count(target, stage, key, counter, nodeid=nodeid)
        if band is None:
            band = self.bands.lookup("regress", stage, counter, str(entry.get("convention", "")))
        rows = compare_entry(entry, expected, band)
        rows += compare_values("shape", shape, doc["shape"])
        context = self._env_context(env, doc.get("environment") or {})
        if rows:
            path = count_path(self.root, target, stage, key)

            def put(rec: dict[str, Any]) -> None:
                rec.setdefault("counters", {})[counter] = entry
                rec["shape"] = shape
                rec.setdefault("environment", {}).update(env)
            context.append(self._obtained_note(path, count_address(target, stage, counter, key), put))
            self._fail(format_mismatch(f"count golden {target}-{stage}-{counter}-{key}: measured counts differ "
                                       "from the golden.", rows, band=band, path=self.display_path(path),
                                       regenerate=regenerate_command(self.config, nodeid), context=context))

    # ----------------------------------------------------------------------- xdist
    def worker_output(self) -> str:
        return json.dumps({
            "layouts": [[list(k), v] for k, v in sorted(self.layout_records.items())],
            "counts": [[list(k), {"shape": r.shape, "environment": r.environment,
                                  "counters": r.counters}] for k, r in sorted(self.count_records.items())],
            "obtained": self.obtained,
            "env_seen": {k: list(v) for k, v in self.env_seen.items()},
            "collect_errors": self.collect_errors})

    def add_worker_output(self, data: Mapping[str, Any]) -> None:
        for key, rec in data.get("layouts", []):
            mine = self.layout_records.setdefault(tuple(key), {"text_tokens": rec["text_tokens"], "pages": {}})
            mine["pages"].update(rec["pages"])
        for key, rec in data.get("counts", []):
            mine = self.count_records.setdefault(tuple(key), _CountRecord(rec["shape"]))
            mine.environment.update(rec["environment"])
            mine.counters.update(rec["counters"])
        for path, rec in data.get("obtained", {}).items():
            mine = self.obtained.setdefault(path, {"differs": []})
            mine.setdefault("layout", {}).update(rec.get("layout", {}))
            mine.setdefault("counters", {}).update(rec.get("counters", {}))
            mine.setdefault("environment", {}).update(rec.get("environment", {}))
            for name in ("shape", "text_tokens"):
                if name in rec:
                    mine[name] = rec[name]
            mine["differs"] = sorted(set(mine["differs"]) | set(rec.get("differs", [])))
        for name, pair in data.get("env_seen", {}).items():
            self.env_seen.setdefault(name, tuple(pair))
        self.collect_errors = max(self.collect_errors, int(data.get("collect_errors", 0)))

    # ----------------------------------------------------------------------- finish
    def start(self, what: str) -> None:
        """Take the update lock (writing runs only) and sweep stale temporary files."""
        if not self.writes:
            return
        self.lock.acquire(what)
        self.swept = sweep_temp_files(self.root, self.lock)

    def stop_reasons(self, session: pytest.Session) -> list[str]:
        """Why this run cannot vouch for the whole definition (empty: it can)."""
        reasons = []
        if self.collect_errors:
            reasons.append("collection errors")
        if self.worker_failures:
            reasons.append("an xdist worker crashed")
        if session.shouldstop or session.shouldfail:
            reasons.append("stopped early")
        if session.exitstatus == pytest.ExitCode.INTERRUPTED:
            reasons.append("interrupted")
        if self.config.getoption("collectonly", False):
            reasons.append("--collect-only")
        return reasons

    def finish(self, session: pytest.Session) -> None:
        """Write what was recorded (never deleting), find unused goldens, prune if asked and allowed."""
        try:
            if self.update and not self.stop_reasons(session):
                # fields a kind no longer holds go (every other byte kept), before the rows go in
                failed: list = []
                self.migrated = migrate_legacy(self.root, self.lock, failed)
                self.errors += [f"could not rewrite {self.display_path(path)} without its legacy fields: {exc}"
                                for path, exc in failed]
            if self.update:
                self._write_layouts()
                self._write_counts()
            self._find_unused()
            if self.prune:
                self._prune(self.stop_reasons(session))
            self._finish_obtained()
        finally:
            self.lock.release()

    def _finish_obtained(self) -> None:
        """Write each golden's obtained file (the golden with this run's differing values in
        place), and remove our stale ones: those whose every differing address passed now."""
        for name, rec in sorted(self.obtained.items()):
            path = Path(name)
            kind = "layout" if path.parent.name == "layout" else "count"
            try:
                doc = self.store.load(path, kind)
            except GoldenError:
                doc = None
            if doc is None:
                continue
            doc = without_legacy(json.loads(json.dumps(doc)))
            if kind == "layout":
                doc["pages"].update(rec.get("layout", {}))
                doc["text_tokens"] = rec.get("text_tokens", doc["text_tokens"])
            else:
                doc["counters"].update(rec.get("counters", {}))
                doc["shape"] = rec.get("shape", doc["shape"])
                doc.setdefault("environment", {}).update(rec.get("environment", {}))
            written, why = self.store.write_obtained(path, doc, rec["differs"])
            if written is not None:
                self.obtained_written.append(written)
            else:
                self.obtained_problems.append(why)
        passed = {a for a, outcome in self.reported.items() if outcome == "passed"}
        if not passed:
            return
        fresh = set(self.obtained)
        for pattern in (f"*/layout/*{OBTAINED_SUFFIX}", f"*/count/*/*{OBTAINED_SUFFIX}"):
            for found in sorted(self.root.glob(pattern)):
                golden = found.with_name(found.name[:-len(OBTAINED_SUFFIX)] + ".json")
                if str(golden) not in fresh and self.store.remove_stale_obtained(golden, passed):
                    self.obtained_removed.append(found)

    def _write(self, path: Path, kind: str, doc: dict[str, Any], old: dict[str, Any] | None) -> None:
        if old is not None and facts(old) == facts(json.loads(dumps_golden(doc))):
            self.unchanged.append(path)
            diffs = [f"{k}: {old.get('environment', {}).get(k)!r} -> {v!r}"
                     for k, v in sorted(doc.get("environment", {}).items())
                     if old.get("environment", {}).get(k) != v]
            if diffs:
                self.env_only.append((path, diffs))
            return
        try:
            (self.written if write_atomic(path, dumps_golden(doc)) else self.unchanged).append(path)
        except OSError as exc:
            self.errors.append(f"could not write {self.display_path(path)}: {exc}")

    def _old(self, path: Path, kind: str, ran: Iterable[str], expected: Iterable[str] | None,
             command: str) -> dict[str, Any] | None | GoldenError:
        """The golden at ``path`` before this run's rows go in. A file that cannot be read is
        replaced only when this run re-measured every row the suite definition puts in it
        (``expected``); otherwise the run refuses to touch it (an error naming the file) and
        returns the :class:`GoldenError`: rewriting it would drop rows that did not run."""
        try:
            return load_doc(path, kind, display=self.display_path(path))
        except GoldenError as exc:
            missing = sorted(set(expected or ()) - set(ran))
            if expected is not None and not missing:
                self.replaced_corrupt.append(path)
                return None
            what = "page rows" if kind == "layout" else "counter entries"
            left = (f"{len(missing)} of the {len(set(expected or ()))} {what} the suite puts in it did not run "
                    f"(e.g. {missing[0]}), so rewriting it would drop them" if missing else
                    f"the suite definition does not say which {what} it holds, so rewriting it could drop some")
            problem = str(exc).split("\n", 1)[0].rstrip(".")
            self.errors.append(f"not updated: {problem}; {left}. Restore it (git checkout -- "
                               f"{self.display_path(path)}) or delete it, or update all of its rows: {command}")
            return exc

    def _write_layouts(self) -> None:
        for (target, mode), rec in sorted(self.layout_records.items()):
            path = layout_path(self.root, target, mode)
            old = self._old(path, "layout", rec["pages"], self.expected.layouts.get((target, mode)),
                            f"{regenerate_command(self.config, None)} --target {target} --mode {mode} -k layout")
            if isinstance(old, GoldenError):
                continue
            # rows of pages that did not run are kept, even under another text_tokens (never delete;
            # a stale row fails its test and names the command that regenerates it)
            pages = dict(old["pages"]) if old else {}
            pages.update(rec["pages"])
            import harness

            doc = {"schema": SCHEMA_VERSION, "kind": "layout", "target": target, "mode": mode,
                   "text_tokens": rec["text_tokens"], "pages": pages,
                   "environment": {"harness": harness.__version__}}
            self._write(path, "layout", doc, old)

    def _write_counts(self) -> None:
        for (target, stage, key), rec in sorted(self.count_records.items()):
            path = count_path(self.root, target, stage, key)
            want = self.expected.counts.get((target, stage, key))
            old = self._old(path, "count", rec.counters, None if want is None else want[1],
                            f"{regenerate_command(self.config, None)} --target {target} --stage {stage}")
            if isinstance(old, GoldenError):
                continue
            counters = dict(old["counters"]) if old else {}
            counters.update(rec.counters)
            environment = dict(old.get("environment", {})) if old else {}
            environment.update(rec.environment)
            doc = {"schema": SCHEMA_VERSION, "kind": "count", "target": target, "stage": stage,
                   "shape_key": key, "shape": rec.shape, "counters": counters, "environment": environment}
            self._write(path, "count", doc, old)

    def _find_unused(self) -> None:
        """Golden files, pages and counter entries the suite definition does not expect."""
        expected = self.expected
        for path in iter_golden_files(self.root):
            kind = path.parent.name if path.parent.name == "layout" else "count"
            try:
                doc = load_doc(path, kind)
            except GoldenError:
                continue
            if doc is None:
                continue
            if kind == "layout":
                pages = expected.layouts.get((doc["target"], doc["mode"]))
                if path != layout_path(self.root, doc["target"], doc["mode"]):
                    continue         # misplaced: not ours to judge
                if pages is None:
                    self.unused.append(layout_address(doc["target"], doc["mode"], "*"))
                else:
                    self.unused += [layout_address(doc["target"], doc["mode"], p)
                                    for p in sorted(set(doc["pages"]) - set(pages))]
            else:
                if path != count_path(self.root, doc["target"], doc["stage"], doc["shape_key"]):
                    continue
                want = expected.counts.get((doc["target"], doc["stage"], doc["shape_key"]))
                if want is None:
                    self.unused.append(count_address(doc["target"], doc["stage"], "*", doc["shape_key"]))
                else:
                    self.unused += [count_address(doc["target"], doc["stage"], c, doc["shape_key"])
                                    for c in sorted(set(doc["counters"]) - set(want[1]))]

    def _prune(self, stop_reasons: list[str]) -> None:
        if stop_reasons:
            if self.unused:
                self.prune_refused.append(f"nothing pruned: not a complete run ({', '.join(stop_reasons)})")
            return
        by_target: dict[str, list[str]] = {}
        for address in self.unused:
            by_target.setdefault(address.split(":", 1)[1].split("-", 1)[0], []).append(address)
        for target, addresses in sorted(by_target.items()):
            missing = sorted(a for a in self.expected.addresses(target) if self.reported.get(a) != "passed")
            if missing:
                self.prune_refused.append(
                    f"{target}: {len(addresses)} unused golden(s) kept: {len(missing)} expected case(s) of "
                    f"{target} did not run and pass in this session (e.g. {missing[0]}); prune in a run "
                    f"that runs all of {target}'s cases")
                continue
            for address in addresses:
                self._delete(address)
            self.pruned += addresses

    def _delete(self, address: str) -> None:
        kind, rest = address.split(":", 1)
        if kind == "layout":
            target, mode, page = rest.split("-", 2)
            path = layout_path(self.root, target, mode)
            if page == "*":
                path.unlink(missing_ok=True)
                return
            doc = load_doc(path, "layout")
            if doc is not None:
                doc["pages"].pop(page, None)
                write_atomic(path, dumps_golden(doc))
            return
        target, stage, counter, key = rest.split("-", 3)
        path = count_path(self.root, target, stage, key)
        if counter == "*":
            path.unlink(missing_ok=True)
            try:
                path.parent.rmdir()
            except OSError:
                pass
            return
        doc = load_doc(path, "count")
        if doc is not None:
            doc["counters"].pop(counter, None)
            write_atomic(path, dumps_golden(doc))

    # ----------------------------------------------------------------------- summary
    def summary_lines(self) -> list[str]:
        """The terminal summary: written, unchanged, environment-only differences, unused, pruned."""
        lines: list[str] = []
        show = self.display_path
        if self.swept:
            lines.append(f"{len(self.swept)} stale temporary file(s) of a killed run removed")
        if self.migrated:
            lines.append(f"{len(self.migrated)} golden file(s) rewritten without the fields their kind no longer "
                         "holds (the pages of count goldens); nothing else in them changed")
        if self.obtained_written:
            lines.append(f"{len(self.obtained_written)} obtained file(s) written beside their golden (what this "
                         "run measured where it differs; diff, then fix the code or regenerate the golden)")
            lines += [f"  obtained: {show(p)}" for p in self.obtained_written[:SUMMARY_LIMIT]]
        if self.obtained_removed:
            lines.append(f"{len(self.obtained_removed)} stale obtained file(s) removed (ours, and what they "
                         "named passes now)")
        lines += [f"obtained file not written: {p}" for p in self.obtained_problems]
        if self.update:
            lines.append(f"{len(self.written)} golden file(s) written, {len(self.unchanged)} unchanged"
                         + (f", {len(self.replaced_corrupt)} corrupt file(s) replaced" if self.replaced_corrupt else ""))
            lines += [f"  written: {show(p)}" for p in self.written[:SUMMARY_LIMIT]]
            if len(self.written) > SUMMARY_LIMIT:
                lines.append(f"  ... and {len(self.written) - SUMMARY_LIMIT} more")
        if self.env_only:
            first = self.env_only[0][1]
            lines.append(f"{len(self.env_only)} golden file(s) not rewritten: only the environment differs "
                         f"({'; '.join(first[:3])}); the counts are the same")
        elif self.env_seen and not self.update:
            lines.append("environment differs from the goldens' (shown, not written): "
                         + "; ".join(f"{k}: golden {a!r}, now {b!r}" for k, (a, b) in sorted(self.env_seen.items())))
        if self.pruned:
            lines.append(f"{len(self.pruned)} unused golden(s) pruned")
            lines += [f"  pruned: {a}" for a in self.pruned[:SUMMARY_LIMIT]]
        remaining = [a for a in self.unused if a not in set(self.pruned)]
        if remaining:
            lines.append(f"{len(remaining)} unused golden(s) (the suite definition no longer expects them); "
                         "remove them with `pytest --prune-golden` in a run of all their target's cases")
            lines += [f"  unused: {a}" for a in remaining[:SUMMARY_LIMIT]]
            if len(remaining) > SUMMARY_LIMIT:
                lines.append(f"  ... and {len(remaining) - SUMMARY_LIMIT} more")
        lines += [f"PRUNE REFUSED: {r}" for r in self.prune_refused]
        lines += [f"ERROR: {e}" for e in self.errors]
        return lines

    @property
    def failed(self) -> bool:
        """Whether the session must fail the run (a write error, or a refused prune)."""
        return bool(self.errors or self.prune_refused)
