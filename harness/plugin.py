"""The harness pytest plugin: one option group, the markers, device gating, goldens.

Registered from the root ``conftest.py``. What it adds:

* options (group ``harness``; ``dest`` prefixed ``harness_``): ``--device``, ``--update-golden``,
  ``--golden-dir``, ``--model-path``, ``--trust-remote-code`` and the suite selectors
  ``--target``, ``--mode``, ``--page``, ``--page-set``, ``--stage``, ``--counter``;
* markers ``gpu``, ``vendor``, ``slow`` and ``golden(key)`` (strict markers are on);
* gating: a ``gpu`` test is skipped with :data:`CUDA_NOT_AVAILABLE_MSG` when CUDA is absent; an
  explicit ``--device`` that cannot be used (no CUDA, index out of range, not a device) is a
  usage error (exit code 4), never a skip. A ``vendor`` test is skipped without
  ``--model-path``/``--trust-remote-code``;
* under xdist with a CUDA device, one worker per GPU: worker ``gw<k>`` uses ``cuda:<k>``, the
  k-th entry of ``CUDA_VISIBLE_DEVICES``; more workers than GPUs is a usage error;
* fixtures: ``harness_device``, ``gpu_device``, ``model_path``, ``golden`` (compare or record one
  golden entry), ``golden_session``, ``bands``, and for the verification suite ``suite_cache``
  (built models on meta, counts memoised per shape key) and ``built_model``;
* at the end: goldens written once per file by the process owning the terminal (xdist workers
  send their records to the controller), and a summary of goldens written, unchanged, unused.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from harness.golden import BandsError, GoldenKey
from harness.golden_session import PROPERTY, WORKER_OUTPUT, GoldenSession
from harness.suite import PAGE_SETS

VENDOR_ENV_VAR = "DEEPSEEK_OCR_PATH"
VENDOR_SKIP_REASON = (
    "vendor DeepSeek-OCR tests need a local model directory: pass --model-path DIR "
    f"(or set {VENDOR_ENV_VAR}) and --trust-remote-code, in the vendor environment (make vendor-env)"
)
#: The one reason a gpu test is skipped on a machine without CUDA.
CUDA_NOT_AVAILABLE_MSG = "CUDA not available: gpu tests run on a CUDA machine (pytest -m gpu --device cuda:N)"
#: The reason a gpu test is skipped when CUDA exists but a non-CUDA --device was asked for.
GPU_NEEDS_CUDA_DEVICE_MSG = "gpu test, but --device {device} was given: pass --device cuda:N to run it"
DEFAULT_DEVICE = "cpu"
DEVICE_RE = re.compile(r"^(cpu|meta|cuda)(?::(\d+))?$")

_SESSION_KEY = pytest.StashKey[GoldenSession]()
_SUITE_KEY = pytest.StashKey[Any]()
_DEVICE_KEY = pytest.StashKey[str]()


# ------------------------------------------------------------------------------------ options
def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the ``harness`` option group. https://docs.pytest.org/en/stable/reference/reference.html#pytest.hookspec.pytest_addoption"""
    group = parser.getgroup("harness", "DeepSeek-OCR FLOP verification harness")
    group.addoption("--device", action="store", dest="harness_device", default=None,
                    help="device for measured runs: cpu, meta or cuda[:N] (default: cpu; gpu tests "
                         "need CUDA). A device that cannot be used is a usage error.")
    group.addoption("--update-golden", action="store_true", dest="harness_update_golden", default=False,
                    help="regenerate golden JSON files from this run instead of comparing; unused "
                         "goldens are deleted only on a full, unfiltered run")
    group.addoption("--golden-dir", action="store", dest="harness_golden_dir", default=None,
                    help="directory of the goldens and tolerances.toml (default: <rootdir>/golden)")
    group.addoption("--model-path", action="store", dest="harness_model_path", default=None,
                    help=f"local DeepSeek-OCR directory (config.json + remote code); default ${VENDOR_ENV_VAR}")
    group.addoption("--trust-remote-code", action="store_true", dest="harness_trust_remote_code", default=False,
                    help="allow executing the Python files of --model-path (required for vendor tests)")
    for flag, dest, what in (("--target", "harness_target", "target (dsocr, ocr2)"),
                             ("--mode", "harness_mode", "mode (tiny, small, base, large, gundam, ...)"),
                             ("--page", "harness_page", "page name"),
                             ("--stage", "harness_stage", "stage (sam, clip, encoder, projector, prefill, decode)"),
                             ("--counter", "harness_counter", "counter (torch, fvcore, thop)")):
        group.addoption(flag, action="append", dest=dest, default=None, metavar="NAME",
                        help=f"run the suite for this {what} only; repeatable or comma-separated")
    group.addoption("--page-set", action="store", dest="harness_page_set", default=None,
                    choices=PAGE_SETS,
                    help="pages of the suite: default, grid, corpus or all (default: all)")


# ------------------------------------------------------------------------------------ devices
def parse_device(text: str) -> tuple[str, int | None]:
    """``"cuda:1"`` -> ``("cuda", 1)``; :class:`pytest.UsageError` for anything else."""
    match = DEVICE_RE.match(text.strip())
    if not match or (match.group(1) != "cuda" and match.group(2) is not None):
        raise pytest.UsageError(
            f"--device {text!r}: expected cpu, meta, cuda or cuda:N (N a CUDA device index), "
            "e.g. --device cuda:0")
    return match.group(1), (int(match.group(2)) if match.group(2) is not None else None)


def _cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _xdist_worker_id() -> str | None:
    return os.environ.get("PYTEST_XDIST_WORKER") or None


def worker_gpu(config: pytest.Config) -> str:
    """The CUDA device of this process: under xdist worker ``gw<k>`` takes ``cuda:<k>`` (the k-th
    entry of ``CUDA_VISIBLE_DEVICES``, see :mod:`harness.gpu.workers`); otherwise ``--device``'s
    index (default 0)."""
    from harness.gpu.workers import worker_device

    worker = _xdist_worker_id()
    if worker is None:
        text = config.getoption("harness_device") or "cuda:0"
        _, index = parse_device(text)
        return f"cuda:{index or 0}"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        return worker_device(worker, visible,
                             device_count=None if visible is not None else _cuda_device_count()).device
    except RuntimeError as exc:
        raise pytest.UsageError(str(exc)) from exc


def resolve_device(config: pytest.Config) -> str:
    """Validate ``--device`` and return the device of this process (one GPU per xdist worker)."""
    text = config.getoption("harness_device")
    if text is None:
        return DEFAULT_DEVICE
    kind, index = parse_device(text)
    if kind != "cuda":
        return kind
    if _xdist_worker_id() is not None:
        return worker_gpu(config)       # the controller validated the request
    count = _cuda_device_count()
    if count == 0:
        import torch

        raise pytest.UsageError(
            f"--device {text} was requested, but CUDA is unavailable (torch {torch.__version__}, "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}). Please double-check "
            "your testing environment, or run without --device to skip the gpu tests.")
    if index is not None and index >= count:
        raise pytest.UsageError(
            f"--device {text}: only {count} CUDA device(s) visible "
            f"(cuda:0{'..cuda:' + str(count - 1) if count > 1 else ''}).")
    workers = getattr(config.option, "numprocesses", None)
    if isinstance(workers, int) and workers > count:
        raise pytest.UsageError(
            f"-n {workers} with --device {text}: one xdist worker per GPU, but only {count} "
            f"visible; use -n {count}.")
    return f"cuda:{index or 0}"


# ------------------------------------------------------------------------------------ configure
def pytest_configure(config: pytest.Config) -> None:
    """Register markers, validate --device and the selectors, start the golden session.

    https://docs.pytest.org/en/stable/reference/reference.html#pytest.hookspec.pytest_configure
    """
    config.addinivalue_line("markers", "gpu: needs a CUDA device (run with -m gpu --device cuda:N)")
    config.addinivalue_line("markers", "vendor: needs the vendor DeepSeek-OCR directory (--model-path) and its environment")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "golden(key): the test checks golden <target>-<mode>-<page>-<stage>-<counter>")
    config.stash[_DEVICE_KEY] = resolve_device(config)
    _validate_selection(config)
    root = Path(config.getoption("harness_golden_dir") or config.rootpath / "golden")
    if not root.is_absolute():
        root = Path(config.invocation_params.dir) / root
    session = GoldenSession(config, root, root / "tolerances.toml")
    try:
        session.bands  # read once, so a broken file is a usage error up front
    except BandsError as exc:
        raise pytest.UsageError(f"tolerance bands: {exc}") from exc
    config.stash[_SESSION_KEY] = session
    config.pluginmanager.register(GoldenHooks(session), "harness-goldens")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistGoldenHooks(session), "harness-xdist-goldens")


def _validate_selection(config: pytest.Config) -> None:
    """Unknown names given to --target/--mode/--page/--stage/--counter are usage errors."""
    dests = ("harness_target", "harness_mode", "harness_page", "harness_stage", "harness_counter")
    if not any(config.getoption(d, None) for d in dests):
        return
    from harness.suite import selection_from_config, validate_selection

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


def _golden_key_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("golden")
    if marker is None:
        return None
    if len(marker.args) != 1 or not isinstance(marker.args[0], (str, GoldenKey)):
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.golden takes one key "
                                "'<target>-<mode>-<page>-<stage>-<counter>'")
    return str(GoldenKey.parse(str(marker.args[0])))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Gate gpu/vendor tests with one reason each; tag golden tests with their key.

    https://docs.pytest.org/en/stable/reference/reference.html#pytest.hookspec.pytest_collection_modifyitems
    """
    if vendor_model_path(config) is None or not config.getoption("harness_trust_remote_code"):
        skip_vendor = pytest.mark.skip(reason=VENDOR_SKIP_REASON)
        for item in items:
            if "vendor" in item.keywords:
                item.add_marker(skip_vendor)
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if gpu_items:
        device = process_device(config)
        reason = None
        if not _cuda_available():
            reason = CUDA_NOT_AVAILABLE_MSG
        elif config.getoption("harness_device") is not None and not device.startswith("cuda"):
            reason = GPU_NEEDS_CUDA_DEVICE_MSG.format(device=device)
        if reason:
            for item in gpu_items:
                item.add_marker(pytest.mark.skip(reason=reason))
    for item in items:
        key = _golden_key_of(item)
        if key is not None:
            item.user_properties.append((PROPERTY, key))


class GoldenHooks:
    """Per-run hooks of the golden bookkeeping (registered in pytest_configure with its session)."""

    def __init__(self, session: GoldenSession) -> None:
        self.session = session

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        """Count deselected items: a run that deselects anything never deletes unused goldens."""
        self.session.deselected += len(items)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """A collection error makes the run partial (no deletion of unused goldens)."""
        if report.failed:
            self.session.collect_errors += 1

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Learn which golden keys this run collected (every phase, skipped tests included)."""
        reported = self.session.reported
        for name, value in report.user_properties:
            if name != PROPERTY or reported.get(value) == "failed":
                continue
            if report.failed or report.skipped:
                reported[value] = report.outcome
            else:
                reported.setdefault(value, "passed")

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write goldens (terminal-owning process only); OR a write failure into the exit status.

        https://docs.pytest.org/en/stable/reference/reference.html#pytest.hookspec.pytest_sessionfinish
        """
        config = session.config
        if hasattr(config, "workerinput"):      # xdist worker: hand the records to the controller
            config.workeroutput[WORKER_OUTPUT] = self.session.worker_output()
            return
        self.session.finish(session)
        if self.session.errors and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        """Goldens written, unchanged and unused.

        https://docs.pytest.org/en/stable/reference/reference.html#pytest.hookspec.pytest_terminal_summary
        """
        if hasattr(config, "workerinput"):
            return
        lines = self.session.summary_lines()
        if lines:
            terminalreporter.write_sep("-", "harness goldens")
            for line in lines:
                terminalreporter.write_line(line)
        cache = config.stash.get(_SUITE_KEY, None)
        stats = cache.stats_lines() if cache is not None else []
        if stats:
            terminalreporter.write_sep("-", "harness suite cache")
            for line in stats:
                terminalreporter.write_line(line)


class XdistGoldenHooks:
    """xdist support, registered only when xdist is loaded: the controller merges worker records."""

    def __init__(self, session: GoldenSession) -> None:
        self.session = session

    @pytest.hookimpl
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Merge a finished worker's golden records (a crashed worker makes the run partial)."""
        output = getattr(node, "workeroutput", {}) or {}
        if error or WORKER_OUTPUT not in output:
            self.session.worker_failures += 1
        if WORKER_OUTPUT in output:
            self.session.add_worker_output(json.loads(output[WORKER_OUTPUT]))


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def model_path(pytestconfig: pytest.Config) -> Path:
    """The vendor model directory (vendor tests only)."""
    path = vendor_model_path(pytestconfig)
    if path is None:
        pytest.skip(VENDOR_SKIP_REASON)
    return path


@pytest.fixture(scope="session")
def harness_device(pytestconfig: pytest.Config) -> str:
    """The device of measured runs in this process: ``--device`` (default cpu), pinned under xdist."""
    return process_device(pytestconfig)


@pytest.fixture(scope="session")
def gpu_device(pytestconfig: pytest.Config) -> str:
    """The CUDA device of gpu tests in this process (skips without CUDA; one GPU per xdist worker)."""
    if not _cuda_available():
        pytest.skip(CUDA_NOT_AVAILABLE_MSG)
    device = process_device(pytestconfig)
    return device if device.startswith("cuda") else worker_gpu(pytestconfig)


@pytest.fixture(scope="session")
def suite_cache(pytestconfig: pytest.Config):
    """The session cache of the verification suite: built models (on meta), layouts, analytic
    costs, and measured counts memoised per shape key (see :mod:`harness.suite`)."""
    from harness.suite import SuiteCache

    if _SUITE_KEY not in pytestconfig.stash:
        pytestconfig.stash[_SUITE_KEY] = SuiteCache(
            model_path=vendor_model_path(pytestconfig),
            trust_remote_code=bool(pytestconfig.getoption("harness_trust_remote_code")))
    return pytestconfig.stash[_SUITE_KEY]


@pytest.fixture(scope="session")
def built_model(suite_cache):
    """``built_model(target)``: the target's model built once per session on meta."""
    return suite_cache.built_model


@pytest.fixture(scope="session", name="golden_session")
def golden_session_fixture(pytestconfig: pytest.Config) -> GoldenSession:
    """The golden bookkeeping of this process."""
    return golden_session(pytestconfig)


@pytest.fixture(scope="session")
def bands(pytestconfig: pytest.Config):
    """The tolerance bands of ``<golden-dir>/tolerances.toml``."""
    return golden_session(pytestconfig).bands


def base_environment(device: str) -> dict[str, Any]:
    """Versions that make a golden: harness, torch, transformers, counters; and the device type."""
    env = dict(_versions())
    env["device"] = device.split(":")[0]
    return env


@functools.lru_cache(maxsize=None)
def _versions() -> tuple[tuple[str, Any], ...]:
    import importlib.metadata as md

    import harness

    env: dict[str, Any] = {"harness": harness.__version__}
    for name, dist in (("torch", "torch"), ("transformers", "transformers"),
                       ("fvcore", "fvcore"), ("thop", "ultralytics-thop")):
        try:
            env[name] = md.version(dist)
        except md.PackageNotFoundError:
            env[name] = None
    return tuple(sorted(env.items()))


class GoldenCheck:
    """The ``golden`` fixture: compare (or, with --update-golden, record) this test's entry."""

    def __init__(self, session: GoldenSession, item: pytest.Item) -> None:
        self._session = session
        self._item = item

    @property
    def key(self) -> GoldenKey:
        """This test's key, from ``@pytest.mark.golden(key)``."""
        text = _golden_key_of(self._item)
        if text is None:
            raise pytest.UsageError(f"{self._item.nodeid}: the golden fixture needs "
                                    "@pytest.mark.golden('<target>-<mode>-<page>-<stage>-<counter>')")
        return GoldenKey.parse(text)

    @property
    def update(self) -> bool:
        """Whether this run regenerates goldens."""
        return self._session.update

    def check(self, entry: Mapping[str, Any], *, layout: Any = None,
              environment: Mapping[str, Any] | None = None) -> None:
        """Compare ``entry`` with its golden within the regress band (or record it)."""
        __tracebackhide__ = True
        env = base_environment(process_device(self._item.config))
        env.update(environment or {})
        self._session.check(self.key, entry, layout=layout, environment=env, nodeid=self._item.nodeid)

    def exists(self) -> bool:
        """Whether this test's golden entry exists (a corrupt file counts as absent)."""
        key = self.key
        try:
            doc = self._session.load(self._session.path_for(key), self._item.nodeid)
        except Exception:
            return False
        return doc is not None and key.counter in doc["stages"].get(key.stage, {})

    def read(self, *, command: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(entry, document)`` of this test's golden, failing with the fix when missing
        (``command``: the fix to print when another test or environment makes the golden)."""
        __tracebackhide__ = True
        return self._session.read(self.key, self._item.nodeid, command=command)


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> GoldenCheck:
    """Compare or record this test's golden entry (key from ``@pytest.mark.golden``)."""
    return GoldenCheck(golden_session(request.config), request.node)
