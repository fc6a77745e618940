"""pytest plugin: the ``flop_count`` fixture asserts your model's FLOP counts against a golden.

Registered by the ``pytest11`` entry point ``harness-count``, it adds the fixture and nothing else
(no option, no ini key, no marker, no torch import until a test uses it); the options are opt-in,
in :mod:`harness.count.pytest_options`. The golden logic is :mod:`harness.count.golden`'s. Usage,
recording and bands: docs/count.md.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

from .pytest_options import INI_GOLDEN_DIR, OPTIONS_PLUGIN, UPDATE_OPTION

__all__ = ["flop_count", "FlopCount", "golden_root"]

_STATE = pytest.StashKey["_Goldens"]()
#: ``workeroutput`` key of an xdist worker's records.
WORKER_OUTPUT = "harness_flop_count"


class _Goldens:
    """The flop_count goldens of one pytest process: the names asked for, the documents to write
    (``--flop-count-update-golden``; written once, at the end, by the terminal-owning process,
    under the golden engine's update lock), and what was written."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}             # name -> the nodeid that asked for it
        self.records: dict[str, dict] = {}          # golden path -> document to write
        self.written: list[str] = []
        self.unchanged: list[str] = []
        self.obtained: list[str] = []
        self.unused: list[str] = []
        self.errors: list[str] = []
        self.incomplete = 0                         # collection errors, crashed workers, deselections
        self.store = None

    def store_for(self, root: Path):
        from harness.golden import GoldenStore

        if self.store is None or self.store.root != root:
            self.store = GoldenStore(root)
        return self.store


def _state(config: pytest.Config) -> "_Goldens":
    if _STATE not in config.stash:
        config.stash[_STATE] = _Goldens()
    return config.stash[_STATE]


def pytest_configure(config: pytest.Config) -> None:
    """Start the record of this session's flop_count goldens, and count what makes this run partial
    in its own state (collect and deselect reports carry no config, and a pytester run in-process
    has a config of its own).
    https://docs.pytest.org/en/stable/reference/reference.html#pytest.hookspec.pytest_configure"""
    state = config.stash[_STATE] = _Goldens()
    config.pluginmanager.register(_Partial(state), f"harness-flop-count-partial-{id(config)}")


class _Partial:
    """A collection error or a deselected test: not a full run (no unused goldens listed)."""

    def __init__(self, state: "_Goldens") -> None:
        self.state = state

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.state.incomplete += 1

    def pytest_deselected(self, items: list) -> None:
        if items:
            self.state.incomplete += 1


def golden_root(config: pytest.Config) -> Path:
    """``--flop-count-golden-dir`` (or the suite plugin's ``--golden-dir``; relative to the
    invocation directory), else the ini option ``flop_count_golden_dir`` (relative to the rootdir),
    else ``<rootdir>/golden``."""
    option = (config.getoption("flop_count_golden_dir", default=None)
              or config.getoption("harness_golden_dir", default=None))
    if option:
        root = Path(option)
        return root if root.is_absolute() else Path(config.invocation_params.dir) / root
    try:
        ini = config.getini(INI_GOLDEN_DIR)
    except ValueError:              # the project did not opt in to the options plugin
        ini = None
    if ini:
        root = Path(str(ini))
        return root if root.is_absolute() else config.rootpath / root
    return config.rootpath / "golden"


def _update(config: pytest.Config) -> bool:
    """``--flop-count-update-golden`` (or the suite plugin's ``--update-golden``)."""
    return bool(config.getoption("flop_count_update_golden", default=False)
                or config.getoption("harness_update_golden", default=False))


def regenerate_command(config: pytest.Config, nodeid: str) -> str:
    """The command that records ``nodeid``'s golden (naming the options plugin unless it is loaded)."""
    opt_in = "" if config.pluginmanager.has_plugin(OPTIONS_PLUGIN) else f"-p {OPTIONS_PLUGIN} "
    return f"pytest {opt_in}{shlex.quote(nodeid)} {UPDATE_OPTION}"


class FlopCount:
    """The ``flop_count`` fixture: ``flop_count(model, *args, **kwargs)`` -> CountResult."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request
        self._config = request.config
        self._calls = 0

    def __call__(self, model: Any, *args: Any, name: str | None = None, expected: Any = None,
                 rel: float | None = None, abs: float | None = None, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        import json

        from harness.golden import Band, BandsError, dumps_golden, format_mismatch
        from harness.golden.store import obtained_path

        from .api import count
        from .golden import (CountGoldenError, build_document, compare_documents, environment_diff,
                             golden_file, golden_name, load_document, read_bands)

        node = self._request.node
        state = _state(self._config)
        self._calls += 1
        if name is None:
            if self._calls > 1:
                pytest.fail(f"{node.nodeid}: flop_count called more than once in one test; give each "
                            f"call its own name=...", pytrace=False)
            name = golden_name(node.nodeid.split("/")[-1])
        names = state.names
        if names.setdefault(name, node.nodeid) != node.nodeid:
            pytest.fail(f"flop_count golden {name!r} is already used by {names[name]}; pass another "
                        f"name=...", pytrace=False)
        root = golden_root(self._config)
        try:
            path = golden_file(root, name)
        except ValueError as exc:
            pytest.fail(str(exc), pytrace=False)
        store = state.store_for(root)
        store.base = self._config.rootpath
        regenerate = regenerate_command(self._config, node.nodeid)
        result = count(model, *args, expected=expected, **kwargs)
        if result.verdict is not None and not result.verdict.passed:
            pytest.fail(f"{result.model}: the counters do not agree with expected={result.verdict.expected:,} "
                        f"after their named causes\n{result.verdict}\n\n{result.summary()}", pytrace=False)
        doc = build_document(name, result)
        shown = store.display(path)
        if _update(self._config):
            state.records[str(path)] = json.loads(dumps_golden(doc))     # written when the run ends
            return result
        try:
            golden = load_document(store, path, regenerate)
        except CountGoldenError as exc:
            pytest.fail(str(exc), pytrace=False)
        if golden is None:
            pytest.fail(f"no flop_count golden {shown} for {result.model}.\nTo record it, run:\n  "
                        f"{regenerate}", pytrace=False)
        override = None
        if rel is not None or abs is not None:
            override = Band(rel=float(rel or 0.0), abs=float(abs or 0.0), where="flop_count(rel=, abs=)")
        try:
            bands = read_bands(root)
        except BandsError as exc:
            pytest.fail(f"tolerance bands: {exc}", pytrace=False)
        rows, used = compare_documents(doc, golden, bands=bands, override=override)
        if rows:
            written, why = store.write_obtained(path, doc, [name])
            context = [f"bands: " + "; ".join(f"{k} {b.describe()}" for k, b in used.items() if b.rel or b.abs)
                       if any(b.rel or b.abs for b in used.values()) else "bands: exact",
                       *environment_diff(doc, golden),
                       (f"obtained: {store.display(written)} (this run's document; diff it with the golden)"
                        if written is not None else f"obtained file not written: {why}")]
            pytest.fail(format_mismatch(f"{result.model}: FLOP counts differ from the golden "
                                        f"({len(rows)} field(s); FLOPs = 2 x MACs)", rows, path=Path(shown),
                                        regenerate=regenerate, context=context), pytrace=False)
        if store.remove_stale_obtained(path, {name}):       # ours, and it passes now
            state.obtained.append(f"removed stale {store.display(obtained_path(path))}")
        return result


@pytest.fixture
def flop_count(request: pytest.FixtureRequest) -> FlopCount:
    """Count a model with every counter and assert the counts against its golden (see the module)."""
    return FlopCount(request)


def _complete(session: pytest.Session, state: "_Goldens") -> bool:
    """A full run: every test of the default paths collected and none deselected, nothing stopped
    it, no worker crashed. Only such a run can say a golden is unused."""
    config = session.config
    return not (state.incomplete or session.shouldstop or session.shouldfail
                or session.exitstatus == pytest.ExitCode.INTERRUPTED
                or config.getoption("collectonly", False)
                or getattr(config, "args_source", None) == pytest.Config.ArgsSource.ARGS)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Workers hand their records to the controller; the terminal-owning process writes the
    recorded goldens (atomically, under the update lock) and lists unused ones in a full run.
    https://docs.pytest.org/en/stable/reference/reference.html#pytest.hookspec.pytest_sessionfinish"""
    import json

    config = session.config
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    if hasattr(config, "workerinput"):
        config.workeroutput[WORKER_OUTPUT] = json.dumps({"names": state.names, "records": state.records,
                                                        "incomplete": state.incomplete})
        return
    root = golden_root(config)
    if state.records:
        _write(state, root, config)
    if (root / "flop_count").is_dir() and _complete(session, state):
        from .golden import unused_files

        store = state.store_for(root)
        store.base = config.rootpath
        state.unused = [store.display(p) for p in unused_files(root, set(state.names))]
    if state.errors and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _write(state: "_Goldens", root: Path, config: pytest.Config) -> None:
    from harness.golden import GoldenError, UpdateLock
    from harness.golden.store import obtained_path

    from .golden import write_document

    store = state.store_for(root)
    store.base = config.rootpath
    lock = UpdateLock(root / "flop_count")
    try:
        lock.acquire(" ".join(config.invocation_params.args))
    except (GoldenError, OSError) as exc:
        state.errors.append(f"flop_count goldens not written: {exc}")
        return
    try:
        for path, doc in sorted(state.records.items()):
            shown = store.display(path)
            try:
                changed = write_document(Path(path), doc)
            except OSError as exc:
                state.errors.append(f"could not write {shown}: {exc}")
                continue
            (state.written if changed else state.unchanged).append(shown)
            name = Path(path).stem
            if store.remove_stale_obtained(Path(path), {name}):
                state.obtained.append(f"removed stale {store.display(obtained_path(Path(path)))}")
    finally:
        lock.release()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist: merge a finished worker's records (a crashed worker makes the run incomplete)."""
    import json

    config = node.config
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    output = getattr(node, "workeroutput", {}) or {}
    if error or WORKER_OUTPUT not in output:
        state.incomplete += 1
        return
    data = json.loads(output[WORKER_OUTPUT])
    for name, nodeid in data["names"].items():
        state.names.setdefault(name, nodeid)
    state.records.update(data["records"])
    state.incomplete += int(data.get("incomplete", 0))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Say which flop_count goldens this run wrote, and which no test asked for in a full run.
    https://docs.pytest.org/en/stable/reference/reference.html#pytest.hookspec.pytest_terminal_summary"""
    state = config.stash.get(_STATE, None)
    if state is None or hasattr(config, "workerinput"):
        return
    if not (state.written or state.unchanged or state.unused or state.errors or state.obtained):
        return
    terminalreporter.write_sep("-", "flop_count goldens")
    for path in state.written:
        terminalreporter.write_line(f"written: {path}")
    if state.unchanged:
        terminalreporter.write_line(f"{len(state.unchanged)} unchanged")
    for line in state.obtained:
        terminalreporter.write_line(line)
    if state.unused:
        terminalreporter.write_line(f"{len(state.unused)} unused golden(s): no test asked for them in this full "
                                    "run (a test skipped, or failed before it called flop_count, asks for none; listed, "
                                    "never deleted: remove them yourself if they are not wanted)")
        for path in state.unused:
            terminalreporter.write_line(f"  unused: {path}")
    for line in state.errors:
        terminalreporter.write_line(f"ERROR: {line}")
