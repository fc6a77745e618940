"""The harness pytest plugin: options, markers, gating, and thin hooks around the golden session.

Registered through the ``pytest11`` entry point ``harness``. Owns the suite's options (group
``harness``; selectors from :mod:`harness.inputs.selection`), the ``gpu``/``vendor``/``slow``
markers, the gating that leaves out what cannot run here (and makes an explicit request that
cannot be met a usage error, exit 4), one xdist worker per GPU, and the fixtures (``engine``,
``golden``, ...). Goldens: :mod:`harness.golden.session` and golden/README.md.
"""

from __future__ import annotations

import gc
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from harness.golden import BandsError, GoldenError
from harness.golden.session import PROPERTY, WORKER_OUTPUT, Expected, GoldenSession, count_address, layout_address
from harness.inputs.selection import MEASURES, PAGE_SETS
from harness.inputs.targets import MODEL_PATH_ENV as VENDOR_ENV_VAR

#: The reason gpu tests are left out on a machine without CUDA.
CUDA_NOT_AVAILABLE_MSG = "CUDA not available: gpu tests run on a CUDA machine (pytest -m gpu --device cuda:N)"
#: The reason gpu tests are left out when CUDA exists but a non-CUDA --device was asked for.
GPU_NEEDS_CUDA_DEVICE_MSG = "gpu tests, but --device {device} was given: pass --device cuda:N to run them"
E2E_LEFT_OUT_MSG = ("end-to-end runs of the repository's scripts and CLI in subprocesses (a minute or more): "
                    "make test-e2e (pytest -m e2e) runs them, and CI does")
VENDOR_LEFT_OUT_MSG = ("vendor tests need the vendor DeepSeek-OCR directory and environment: make test-vendor "
                       "MODEL_PATH=DIR (or --model-path DIR --trust-remote-code under .venv-vendor)")
DEFAULT_DEVICE = "cpu"

_SESSION_KEY = pytest.StashKey[GoldenSession]()
_ENGINE_KEY = pytest.StashKey[Any]()
_DEVICE_KEY = pytest.StashKey[str]()
_GATE_KEY = pytest.StashKey["Gate"]()
_WORKERS_KEY = pytest.StashKey[dict]()
_THREADS_KEY = pytest.StashKey[tuple]()
#: workeroutput key of a worker's left-out reasons and engine statistics (JSON).
WORKER_REPORT = "harness_worker_report"


# ------------------------------------------------------------------------------------ options
def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Add :func:`pytest_harness_golden_definition` (a project may define its own suite)."""
    from harness.pytest import hooks as plugin_hooks

    pluginmanager.add_hookspecs(plugin_hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the ``harness`` option group. https://docs.pytest.org/en/stable/reference/reference.html#pytest.hookspec.pytest_addoption"""
    group = parser.getgroup("harness", "DeepSeek-OCR FLOP verification harness")
    group.addoption("--device", action="store", dest="harness_device", default=None,
                    help="device for measured runs: cpu, meta or cuda[:N] (default: cpu; gpu tests "
                         "need CUDA). A device that cannot be used is a usage error.")
    group.addoption("--update-golden", action="store_true", dest="harness_update_golden", default=False,
                    help="write the goldens of the tests that run (rewritten only when their facts "
                         "change); never deletes anything")
    group.addoption("--prune-golden", action="store_true", dest="harness_prune_golden", default=False,
                    help="delete goldens the suite definition no longer expects; refused for a target "
                         "unless every case of it ran and passed in this run")
    group.addoption("--golden-dir", action="store", dest="harness_golden_dir", default=None,
                    help="directory of the goldens and tolerances.toml (default: the ini option "
                         "harness_golden_dir, else <rootdir>/golden)")
    parser.addini("harness_golden_dir", "directory of the goldens and tolerances.toml, relative to the "
                  "rootdir (default: golden)", default="golden")
    group.addoption("--model-path", action="store", dest="harness_model_path", default=None,
                    help=f"local DeepSeek-OCR directory (config.json + remote code); default ${VENDOR_ENV_VAR}")
    group.addoption("--trust-remote-code", action="store_true", dest="harness_trust_remote_code", default=False,
                    help="allow executing the Python files of --model-path (required for vendor tests)")
    from harness.inputs.selection import target_modes, target_stages

    def names(per_target: dict[str, tuple[str, ...]]) -> str:
        return ", ".join(dict.fromkeys(n for values in per_target.values() for n in values))

    for flag, dest, what in (("--target", "harness_target", f"target ({', '.join(target_stages())})"),
                             ("--mode", "harness_mode", f"mode ({names(target_modes())})"),
                             ("--page", "harness_page", "page name"),
                             ("--stage", "harness_stage", f"stage ({names(target_stages())})"),
                             ("--counter", "harness_counter", f"counter ({', '.join(MEASURES)})")):
        group.addoption(flag, action="append", dest=dest, default=None, metavar="NAME",
                        help=f"run the suite for this {what} only; repeatable or comma-separated")
    group.addoption("--page-set", action="store", dest="harness_page_set", default=None,
                    choices=PAGE_SETS,
                    help="pages of the suite: default, grid, corpus or all (default: all)")


# ------------------------------------------------------------------------------------ devices
def _cuda_device_count() -> int:
    from harness.inputs.device import cuda_device_count

    return cuda_device_count()


def _xdist_worker_id() -> str | None:
    return os.environ.get("PYTEST_XDIST_WORKER") or None


def _parse_device(text: str):
    """``--device``'s :class:`harness.inputs.device.Device`; a usage error for anything else."""
    from harness.inputs.device import DeviceError, parse_device

    try:
        return parse_device(text, "--device")
    except DeviceError as exc:
        raise pytest.UsageError(str(exc)) from None


def worker_gpu(config: pytest.Config) -> str:
    """The CUDA device of this process: under xdist worker ``gw<k>`` takes ``cuda:<k>`` (the k-th
    entry of ``CUDA_VISIBLE_DEVICES``, see :mod:`harness.gpu.workers`); otherwise ``--device``'s
    index (default 0)."""
    from harness.gpu.workers import worker_device

    worker = _xdist_worker_id()
    if worker is None:
        return f"cuda:{_parse_device(config.getoption('harness_device') or 'cuda:0').index or 0}"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        return worker_device(worker, visible,
                             device_count=None if visible is not None else _cuda_device_count()).device
    except RuntimeError as exc:
        raise pytest.UsageError(str(exc)) from exc


def resolve_device(config: pytest.Config) -> str:
    """Validate ``--device`` (:func:`harness.inputs.device.check_device`) and return the device of
    this process (one GPU per xdist worker). CUDA without a CUDA device exits 2, as every harness
    entry point answers it; any other bad device is a usage error."""
    from harness.inputs.device import DeviceError, DeviceUnavailableError, check_device

    text = config.getoption("harness_device")
    if text is None:
        return DEFAULT_DEVICE
    if _parse_device(text).kind == "cuda" and _xdist_worker_id() is not None:
        return worker_gpu(config)       # the controller validated the request
    try:
        device = check_device(text, "--device", device_count=lambda: _cuda_device_count())
    except DeviceUnavailableError as exc:
        pytest.exit(str(exc), returncode=2)
    except DeviceError as exc:
        raise pytest.UsageError(str(exc)) from None
    workers = getattr(config.option, "numprocesses", None)
    if device.startswith("cuda") and isinstance(workers, int) and workers > _cuda_device_count():
        count = _cuda_device_count()
        raise pytest.UsageError(
            f"-n {workers} with --device {text}: one xdist worker per GPU, but only {count} "
            f"visible; use -n {count}.")
    return device


# ------------------------------------------------------------------------------------ gating
class Gate:
    """What can run in this process, and what was left out (reason -> how many).

    Decided on first use (a project that never asks imports no model code); at configure time when
    the run explicitly asks for the vendor target or gpu tests, so an unmet request is a usage
    error before anything runs.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.left_out: dict[str, int] = {}
        self._targets: tuple[dict[str, bool], dict[str, str]] | None = None
        self._cuda: bool | None = None

    def leave_out(self, reason: str, n: int = 1) -> None:
        if n:
            self.left_out[reason] = self.left_out.get(reason, 0) + n

    @property
    def cuda(self) -> bool:
        if self._cuda is None:
            self._cuda = _cuda_available()
        return self._cuda

    @property
    def runnable(self) -> dict[str, bool]:
        """target -> whether it can be measured here."""
        return self._decide()[0]

    @property
    def reasons(self) -> dict[str, str]:
        """target -> why it cannot."""
        return self._decide()[1]

    @property
    def vendor(self) -> bool:
        """Whether the vendor inputs and environment are usable."""
        return self.runnable.get("dsocr", False)

    def check_explicit(self) -> None:
        """Usage errors for explicit requests that cannot be met (-m gpu, -m vendor, --model-path)."""
        config = self.config
        if _markexpr_wants(config, "gpu") and not self.cuda:
            raise pytest.UsageError(f"-m gpu was requested, but {CUDA_NOT_AVAILABLE_MSG}")
        if config.getoption("harness_model_path") or _markexpr_wants(config, "vendor"):
            self._decide()

    def _decide(self) -> tuple[dict[str, bool], dict[str, str]]:
        if self._targets is not None:
            return self._targets
        from harness.inputs.selection import target_stages
        from harness.targets import get_target, target_class

        config = self.config
        runnable: dict[str, bool] = {}
        reasons: dict[str, str] = {}
        model_path = config.getoption("harness_model_path")
        trust = bool(config.getoption("harness_trust_remote_code"))
        env_path = os.environ.get(VENDOR_ENV_VAR)
        explicit_vendor = bool(model_path) or _markexpr_wants(config, "vendor")
        for name in target_stages():
            cls = target_class(name)
            problem = cls.environment_problem()
            if problem is None and cls.needs_model_path:
                path = model_path or env_path
                if not path:
                    problem = (f"target {name} needs --model-path DIR (or ${VENDOR_ENV_VAR}) and "
                               "--trust-remote-code: make test-vendor MODEL_PATH=DIR")
                else:
                    problem = get_target(name, model_path=path, trust_remote_code=trust).input_problem()
                if problem and explicit_vendor:
                    raise pytest.UsageError(f"{problem}")
            elif problem and cls.needs_model_path and explicit_vendor:
                raise pytest.UsageError(problem)
            runnable[name] = problem is None
            if problem:
                reasons[name] = problem
        if _markexpr_wants(config, "vendor") and not runnable.get("dsocr", False):
            raise pytest.UsageError(f"-m vendor was requested, but: {reasons.get('dsocr', VENDOR_LEFT_OUT_MSG)}")
        self._targets = (runnable, reasons)
        return self._targets


def gate(config: pytest.Config) -> Gate:
    """The :class:`Gate` of this process."""
    return config.stash[_GATE_KEY]


def _markexpr_wants(config: pytest.Config, marker: str) -> bool:
    expr = config.option.markexpr or ""
    return bool(re.search(rf"(?<!not )\b{marker}\b", expr)) and not re.search(rf"\bnot\s+{marker}\b", expr)


# ------------------------------------------------------------------------------------ configure
def _golden_root(config: pytest.Config) -> Path:
    value = config.getoption("harness_golden_dir")
    if value:
        root = Path(value).expanduser()
        return root if root.is_absolute() else Path(config.invocation_params.dir) / root
    return config.rootpath / (config.getini("harness_golden_dir") or "golden")


def _definition(config: pytest.Config):
    def expected() -> Expected:
        custom = config.hook.pytest_harness_golden_definition(config=config)
        if custom is not None:
            return custom
        from harness.run.plan import expected as suite_expected

        return suite_expected()
    return expected


def pytest_configure(config: pytest.Config) -> None:
    """Register markers, validate --device, the selectors and the vendor inputs, start the golden
    session (a writing run takes the golden directory's lock here, before any work).

    https://docs.pytest.org/en/stable/reference/reference.html#pytest.hookspec.pytest_configure
    """
    config.addinivalue_line("markers", "gpu: needs a CUDA device (run with -m gpu --device cuda:N)")
    config.addinivalue_line("markers", "vendor: needs the vendor DeepSeek-OCR directory (--model-path) and its environment")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "e2e: runs one of the repository's scripts or a whole CLI/pytest run in a subprocess; "
                            "left out of a plain run, selected by -m e2e (make test-e2e; CI runs it)")
    config.stash[_DEVICE_KEY] = resolve_device(config)
    _validate_selection(config)
    config.stash[_GATE_KEY] = Gate(config)
    config.stash[_GATE_KEY].check_explicit()
    from harness.inputs.selection import target_stages

    root = _golden_root(config)
    session = GoldenSession(config, root, root / "tolerances.toml", expected=_definition(config),
                            stages={s for st in target_stages().values() for s in st},
                            counters=MEASURES)
    try:
        session.bands  # read once, so a broken file is a usage error up front
    except BandsError as exc:
        raise pytest.UsageError(f"tolerance bands: {exc}") from exc
    if not hasattr(config, "workerinput"):
        try:
            session.start(" ".join(config.invocation_params.args))
        except GoldenError as exc:
            raise pytest.UsageError(str(exc)) from exc
        except OSError as exc:
            raise pytest.UsageError(f"--update-golden/--prune-golden: the golden directory {root} is not "
                                    f"writable ({exc.strerror or exc}); pass a writable --golden-dir") from exc
    config.stash[_SESSION_KEY] = session
    config.pluginmanager.register(GoldenHooks(session), "harness-goldens")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistGoldenHooks(session, config), "harness-xdist-goldens")
    if _distributing(config):
        config.stash[_THREADS_KEY] = _share_cores(len(config.option.tx))


def pytest_unconfigure(config: pytest.Config) -> None:
    """Release the golden lock whatever happened (a usage error after configure, an interrupt);
    give back the thread variable the workers were started with."""
    session = config.stash.get(_SESSION_KEY, None)
    if session is not None:
        session.lock.release()
    shared = config.stash.get(_THREADS_KEY, None)
    if shared is not None and shared[1]:
        os.environ.pop(THREADS_VAR, None)
    _drop_empty_benchmarks_dir()


#: pytest-benchmark (a dependency) makes ./.benchmarks in every pytest run; whether it was there
#: before, seen when pytest loads this plugin (before any plugin's pytest_configure).
_BENCHMARKS_DIR = os.path.abspath(".benchmarks")
_BENCHMARKS_BEFORE = os.path.lexists(_BENCHMARKS_DIR)


def _drop_empty_benchmarks_dir() -> None:
    """Remove ./.benchmarks if this run made it and left it empty (installing harness leaves no trace)."""
    if _BENCHMARKS_BEFORE or os.path.islink(_BENCHMARKS_DIR):
        return
    try:
        os.rmdir(_BENCHMARKS_DIR)       # only an empty directory goes
    except OSError:
        pass


def _validate_selection(config: pytest.Config) -> None:
    """Unknown names given to --target/--mode/--page/--stage/--counter are usage errors."""
    dests = ("harness_target", "harness_mode", "harness_page", "harness_stage", "harness_counter")
    if not any(config.getoption(d, None) for d in dests):
        return
    from harness.inputs.selection import selection_from_config, validate_selection

    errors = validate_selection(selection_from_config(config))
    if errors:
        raise pytest.UsageError("\n".join(errors))


def golden_session(config: pytest.Config) -> GoldenSession:
    """The :class:`GoldenSession` of this pytest process."""
    return config.stash[_SESSION_KEY]


def process_device(config: pytest.Config) -> str:
    """The device this process measures on (``--device``, default cpu; pinned under xdist)."""
    return config.stash[_DEVICE_KEY]


def _cuda_available() -> bool:
    try:
        return _cuda_device_count() > 0
    except Exception:  # pragma: no cover - a broken torch install
        return False


def vendor_model_path(config: pytest.Config) -> Path | None:
    """The vendor directory from --model-path or the environment, or None."""
    value = config.getoption("harness_model_path") or os.environ.get(VENDOR_ENV_VAR)
    return Path(value).expanduser() if value else None


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """What the collection imported and built (torch, transformers, the test modules) lives for the
    whole run: move it out of the cyclic garbage collector's sight (``gc.freeze``), so that its
    full collections walk only what the tests make. Measured: a sixth of the CPU time of the
    OCR-2 counter and target tests went to collections walking these objects.

    https://docs.python.org/3/library/gc.html#gc.freeze
    """
    gc.collect()
    gc.freeze()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out gpu and vendor tests that cannot run here (one reason each, in the header).

    https://docs.pytest.org/en/stable/reference/reference.html#pytest.hookspec.pytest_collection_modifyitems
    """
    g = gate(config)
    device = process_device(config)
    gpu_reason = None
    if not any("gpu" in item.keywords for item in items):
        pass                      # nothing to decide (and no torch import for it)
    elif not g.cuda:
        gpu_reason = CUDA_NOT_AVAILABLE_MSG
    elif config.getoption("harness_device") is not None and not device.startswith("cuda"):
        gpu_reason = GPU_NEEDS_CUDA_DEVICE_MSG.format(device=device)
    selected = _selectors_given(config)
    e2e_selected = "e2e" in (config.getoption("markexpr") or "")
    keep, drop = [], []
    for item in items:
        skip = item.get_closest_marker("skip")
        if selected and not _is_fact(item):
            g.leave_out(SELECTION_LEFT_OUT_MSG)
            drop.append(item)
            continue
        if skip is not None and str(skip.kwargs.get("reason", "")).startswith("got empty parameter set"):
            drop.append(item)     # a fact kind with nothing selected here: nothing to run, no skip
        elif gpu_reason and "gpu" in item.keywords:
            g.leave_out(gpu_reason)
            drop.append(item)
        elif "e2e" in item.keywords and not e2e_selected:
            g.leave_out(E2E_LEFT_OUT_MSG)
            drop.append(item)
        elif "vendor" in item.keywords and not g.vendor:
            g.leave_out(g.reasons.get("dsocr", VENDOR_LEFT_OUT_MSG))
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


SELECTION_LEFT_OUT_MSG = ("not a fact of the selection: --target/--mode/--page/--page-set/--stage/--counter run "
                          "the suite's facts they name (run without them for everything)")


def _selectors_given(config: pytest.Config) -> bool:
    return any(config.getoption(d, None) for d in ("harness_target", "harness_mode", "harness_page",
                                                    "harness_stage", "harness_counter", "harness_page_set"))


def _is_fact(item: pytest.Item) -> bool:
    """A fact of the suite (a parametrized ``fact``: a layout, a count, a golden checked analytically)."""
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "fact" in callspec.params


def pytest_report_collectionfinish(config: pytest.Config, start_path: Path, items: list[pytest.Item]) -> list[str]:
    """Once per reason: how many cases were left out, and what would enable them."""
    g = config.stash.get(_GATE_KEY, None)
    return left_out_lines(g.left_out) if g is not None else []


def left_out_lines(left_out: dict[str, int]) -> list[str]:
    """``harness: N case(s) left out, by reason:`` and one line per reason (none: no lines)."""
    if not left_out:
        return []
    lines = [f"harness: {sum(left_out.values())} case(s) left out, by reason:"]
    lines += [f"  {n:>5} -- {reason}" for reason, n in sorted(left_out.items(), key=lambda kv: -kv[1])]
    return lines


# ------------------------------------------------------------------------------------ xdist
#: Workers a CPU run takes with ``-n auto`` at most: past this, starting a worker (torch, collection)
#: costs more than it saves.
MAX_AUTO_WORKERS = 4
#: A selection (--target/--mode/...) takes a worker per this many count facts (a worker's start,
#: torch and the collection, costs about as much as measuring that many).
FACTS_PER_WORKER = 20
#: The thread count torch's CPU pools (OpenMP, MKL) start with. xdist workers on the same cores each
#: default to one thread per core; their spinning pools then cost the others CPU time (measured: the
#: suite on 2 cores, 2 workers, 196 s user -> 170 s with one thread each). The controller sets it
#: to cores // workers for the workers it starts, unless the user set it.
THREADS_VAR = "OMP_NUM_THREADS"


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _share_cores(workers: int) -> tuple[str, bool]:
    """Before xdist starts its workers (they inherit this environment): each of ``workers`` gets
    ``cores // workers`` CPU threads (at least 1) through :data:`THREADS_VAR`, unless it is set
    already. ``(the value the workers see, whether this set it)``."""
    if os.environ.get(THREADS_VAR):
        return os.environ[THREADS_VAR], False
    os.environ[THREADS_VAR] = str(max(1, _usable_cores() // max(1, workers)))
    return os.environ[THREADS_VAR], True


def _distributing(config: pytest.Config) -> bool:
    """This process is an xdist controller that hands tests to workers."""
    return (bool(getattr(config.option, "tx", None)) and not hasattr(config, "workerinput")
            and getattr(config.option, "dist", "no") != "no" and not config.getoption("collectonly"))


@pytest.hookimpl(optionalhook=True, tryfirst=True)    # before xdist's own answer
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (the project's default addopts): one worker per usable CPU core, at most
    :data:`MAX_AUTO_WORKERS`, and none (this process) for a selection of fewer than
    :data:`FACTS_PER_WORKER` count facts per worker; a GPU run (``--device cuda``, ``-m gpu``): one
    worker per visible GPU with ``--device cuda``, otherwise none (this process, its one device);
    ``--benchmark-only``: none."""
    device = config.getoption("harness_device")
    if device is not None and device.startswith("cuda"):
        return _cuda_device_count() if device == "cuda" else 0
    if "gpu" in (config.getoption("markexpr") or "").replace("not gpu", ""):
        return 0
    if config.getoption("benchmark_only", False):   # pytest-benchmark times nothing under xdist
        return 0
    workers = min(_usable_cores(), MAX_AUTO_WORKERS)
    if _selectors_given(config):            # a slice: a worker per FACTS_PER_WORKER facts
        from harness.inputs.selection import selection_from_config
        from harness.run.plan import count_cases

        workers = min(workers, len(count_cases(selection_from_config(config))[0]) // FACTS_PER_WORKER)
    return workers if workers > 1 else 0


class GoldenHooks:
    """Per-run hooks of the golden bookkeeping (registered in pytest_configure with its session)."""

    def __init__(self, session: GoldenSession) -> None:
        self.session = session

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """A collection error makes the run incomplete (no pruning)."""
        if report.failed:
            self.session.collect_errors += 1

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Learn the outcome of each golden address (every phase; a failure sticks)."""
        reported = self.session.reported
        for name, value in report.user_properties:
            if name != PROPERTY or reported.get(value) == "failed":
                continue
            if report.failed or report.skipped:
                reported[value] = report.outcome
            elif report.when == "call":
                reported.setdefault(value, "passed")

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write goldens (terminal-owning process only); a write error or a refused prune fails the run.

        https://docs.pytest.org/en/stable/reference/reference.html#pytest.hookspec.pytest_sessionfinish
        """
        config = session.config
        if hasattr(config, "workerinput"):      # xdist worker: hand the records to the controller
            config.workeroutput[WORKER_OUTPUT] = self.session.worker_output()
            g = config.stash.get(_GATE_KEY, None)
            engine = config.stash.get(_ENGINE_KEY, None)
            config.workeroutput[WORKER_REPORT] = json.dumps({
                "left_out": g.left_out if g is not None else {},
                "engine": engine.stats_lines() if engine is not None else []})
            return
        self.session.finish(session)
        if self.session.failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        """Goldens written, unchanged, unused, pruned; the engine's model runs.

        https://docs.pytest.org/en/stable/reference/reference.html#pytest.hookspec.pytest_terminal_summary
        """
        if hasattr(config, "workerinput"):
            return
        lines = self.session.summary_lines()
        if lines:
            terminalreporter.write_sep("-", "harness goldens")
            for line in lines:
                terminalreporter.write_line(line)
        engine = config.stash.get(_ENGINE_KEY, None)
        stats = engine.stats_lines() if engine is not None else []
        workers = config.stash.get(_WORKERS_KEY, {})
        if workers:                              # xdist: what the workers left out and measured
            left_out = next((w["left_out"] for _, w in sorted(workers.items()) if w["left_out"]), {})
            lines = left_out_lines(left_out)
            if lines:
                terminalreporter.write_sep("-", "harness: left out (decided in the xdist workers)")
                for line in lines:
                    terminalreporter.write_line(line)
            stats = [f"{name}: {line}" if not line.startswith(" ") else line
                     for name, w in sorted(workers.items()) for line in w["engine"]]
        if stats:
            terminalreporter.write_sep("-", "harness engine")
            for line in stats:
                terminalreporter.write_line(line)


class XdistGoldenHooks:
    """xdist support, registered only when xdist is loaded: the controller merges the workers'
    records (goldens, left-out reasons, engine statistics)."""

    def __init__(self, session: GoldenSession, config: pytest.Config) -> None:
        self.session = session
        self.config = config

    @pytest.hookimpl
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Merge a finished worker's golden records (a crashed worker makes the run incomplete)."""
        output = getattr(node, "workeroutput", {}) or {}
        if error or WORKER_OUTPUT not in output:
            self.session.worker_failures += 1
        if WORKER_OUTPUT in output:
            self.session.add_worker_output(json.loads(output[WORKER_OUTPUT]))
        if WORKER_REPORT in output:
            workers = self.config.stash.setdefault(_WORKERS_KEY, {})
            name = getattr(getattr(node, "gateway", None), "id", None) or f"worker{len(workers)}"
            workers[name] = json.loads(output[WORKER_REPORT])

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        """Under xdist the workers collect: say where the left-out cases are reported."""
        if _distributing(config):
            threads, ours = config.stash.get(_THREADS_KEY, ("?", False))
            return ["harness: cases that cannot run here are left out by the xdist workers; how many, "
                    "and why, is said at the end of the run (-n 0: here)",
                    f"harness: {len(config.option.tx)} xdist workers, {THREADS_VAR}={threads} CPU thread(s) each "
                    + (f"(cores // workers; set {THREADS_VAR} to choose)" if ours else "(from the environment)")]
        return []


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def model_path(pytestconfig: pytest.Config) -> Path:
    """The vendor model directory (vendor tests only; they are left out without it)."""
    path = vendor_model_path(pytestconfig)
    if path is None:
        raise pytest.UsageError(VENDOR_LEFT_OUT_MSG)
    return path


@pytest.fixture(scope="session")
def harness_device(pytestconfig: pytest.Config) -> str:
    """The device of measured runs in this process: ``--device`` (default cpu), pinned under xdist."""
    return process_device(pytestconfig)


@pytest.fixture(scope="session")
def gpu_device(pytestconfig: pytest.Config) -> str:
    """The CUDA device of gpu tests in this process (one GPU per xdist worker)."""
    device = process_device(pytestconfig)
    return device if device.startswith("cuda") else worker_gpu(pytestconfig)


@pytest.fixture(scope="session")
def engine(pytestconfig: pytest.Config):
    """The measuring engine: built models (on meta), layouts, analytic costs, and measured counts
    memoised per shape key (see :mod:`harness.run.engine`)."""
    from harness.run.engine import Engine

    if _ENGINE_KEY not in pytestconfig.stash:
        pytestconfig.stash[_ENGINE_KEY] = Engine(
            model_path=vendor_model_path(pytestconfig),
            trust_remote_code=bool(pytestconfig.getoption("harness_trust_remote_code")))
    return pytestconfig.stash[_ENGINE_KEY]


@pytest.fixture(scope="session")
def built_model(engine):
    """``built_model(target)``: the target's model built once per session on meta."""
    return engine.built_model


@pytest.fixture(scope="session", name="golden_session")
def golden_session_fixture(pytestconfig: pytest.Config) -> GoldenSession:
    """The golden bookkeeping of this process."""
    return golden_session(pytestconfig)


@pytest.fixture(scope="session")
def bands(pytestconfig: pytest.Config):
    """The tolerance bands of ``<golden-dir>/tolerances.toml``."""
    return golden_session(pytestconfig).bands


class GoldenCheck:
    """The ``golden`` fixture: check (or, with --update-golden, record) one fact of this test."""

    def __init__(self, session: GoldenSession, item: pytest.Item) -> None:
        self._session = session
        self._item = item

    @property
    def update(self) -> bool:
        return self._session.update

    def _address(self, address: str) -> None:
        if (PROPERTY, address) not in self._item.user_properties:
            self._item.user_properties.append((PROPERTY, address))

    def layout(self, target: str, mode: str, page: str, record: dict[str, Any], *, text_tokens: int) -> None:
        """Check the layout fact of one page."""
        __tracebackhide__ = True
        self._address(layout_address(target, mode, page))
        self._session.check_layout(target, mode, page, record, text_tokens=text_tokens, nodeid=self._item.nodeid)

    def count(self, target: str, stage: str, counter: str, key: str, entry: dict[str, Any], *,
              shape: dict[str, Any], environment: dict[str, Any]) -> None:
        """Check one counter's count of one stage at one shape key."""
        __tracebackhide__ = True
        self._address(count_address(target, stage, counter, key))
        self._session.check_count(target, stage, counter, key, entry, shape=shape,
                                  environment=environment, nodeid=self._item.nodeid)

    def read_count(self, target: str, stage: str, key: str, counter: str, *, command: str | None = None):
        """``(entry, document)`` of a count golden another environment made."""
        __tracebackhide__ = True
        return self._session.read_count(target, stage, key, counter, nodeid=self._item.nodeid, command=command)

    def has_count(self, target: str, stage: str, key: str, counter: str) -> bool:
        return self._session.has_count(target, stage, key, counter)


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> GoldenCheck:
    """Check or record this test's golden facts."""
    return GoldenCheck(golden_session(request.config), request.node)
