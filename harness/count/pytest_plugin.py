"""pytest plugin: the ``flop_count`` fixture asserts your model's FLOP counts against a golden.

Registered by the ``pytest11`` entry point ``harness-count`` (any project with harness installed;
no conftest needed). In a test::

    def test_my_model_flops(flop_count):
        model, x = build_my_model()                      # e.g. under torch.device("meta")
        result = flop_count(model, x)                     # every counter, stock and patched
        assert result["torch patched"].matmul_flops > 0   # the CountResult, for more asserts

``flop_count(model, *args, name=None, expected=None, rel=None, abs=None, **count_options_and_inputs)``
runs :func:`harness.count` and compares every counter's figures (raw, convention, FLOPs, matmul
and element-wise FLOPs, FLOPs by op key, uncounted products) with
``<root>/flop_count/<name>.json``; ``name`` defaults to the test's file and name. ``expected``
(your hand derivation) must hold too (the :class:`~harness.count.Verdict`). A mismatch fails with
an obtained / expected / difference table and the command that regenerates the golden.

* Recording: ``pytest --flop-count-update-golden`` writes the goldens of the tests that ran
  (atomically; unchanged files are not touched); nothing is ever deleted. Without it a missing
  golden is a failure that says how to record it.
* ``<root>``: ``--flop-count-golden-dir``, else the ini option ``flop_count_golden_dir`` (relative to
  the rootdir), else ``<rootdir>/golden``. Tolerance bands: ``<root>/flop_count/tolerances.toml``
  (hand-edited, never written), tables ``[regress.<name>.<counter>.<convention>]`` (``"*"`` a
  wildcard at any level; keys ``rel``, ``abs``, ``note``), or ``rel=``/``abs=`` on the call;
  exact without either.

Installed, harness changes nothing in a project that does not ask: this module (the ``pytest11``
entry point ``harness-count``) adds the fixture and nothing else -- no option, no ini key, no
marker, no import of torch until a test uses the fixture. The two options and the ini key come with
:mod:`harness.count.pytest_options`, which a project opts in to (``pytest_plugins =
["harness.count.pytest_options"]`` in its conftest.py, or ``-p harness.count.pytest_options``);
their ``--flop-count-`` prefix cannot clash with a project's own options. Beside the harness
suite's plugin (this repository), the suite's ``--update-golden`` and ``--golden-dir`` apply too.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

from .pytest_options import INI_GOLDEN_DIR, OPTIONS_PLUGIN, UPDATE_OPTION

__all__ = ["flop_count", "FlopCount", "golden_root"]

_WRITTEN = pytest.StashKey[dict]()


def pytest_configure(config: pytest.Config) -> None:
    """Start the record of goldens this session wrote.
    https://docs.pytest.org/en/stable/reference/reference.html#pytest.hookspec.pytest_configure"""
    config.stash[_WRITTEN] = {"written": [], "unchanged": [], "names": {}}


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
        from harness.golden import Band, BandsError, format_mismatch

        from .api import count
        from .golden import (CountGoldenError, build_document, compare_documents, environment_diff,
                             golden_file, golden_name, load_document, read_bands, write_document)

        node = self._request.node
        self._calls += 1
        if name is None:
            if self._calls > 1:
                pytest.fail(f"{node.nodeid}: flop_count called more than once in one test; give each "
                            f"call its own name=...", pytrace=False)
            name = golden_name(node.nodeid.split("/")[-1])
        names = self._config.stash[_WRITTEN]["names"]
        if names.setdefault(name, node.nodeid) != node.nodeid:
            pytest.fail(f"flop_count golden {name!r} is already used by {names[name]}; pass another "
                        f"name=...", pytrace=False)
        root = golden_root(self._config)
        try:
            path = golden_file(root, name)
        except ValueError as exc:
            pytest.fail(str(exc), pytrace=False)
        regenerate = regenerate_command(self._config, node.nodeid)
        result = count(model, *args, expected=expected, **kwargs)
        if result.verdict is not None and not result.verdict.passed:
            pytest.fail(f"{result.model}: the counters do not agree with expected={result.verdict.expected:,} "
                        f"after their named causes\n{result.verdict}\n\n{result.summary()}", pytrace=False)
        doc = build_document(name, result)
        shown = _show(path, self._config)
        if _update(self._config):
            changed = write_document(path, doc)
            self._config.stash[_WRITTEN]["written" if changed else "unchanged"].append(shown)
            return result
        try:
            golden = load_document(path, regenerate)
        except FileNotFoundError:
            pytest.fail(f"no flop_count golden {shown} for {result.model}.\nTo record it, run:\n  "
                        f"{regenerate}", pytrace=False)
        except CountGoldenError as exc:
            pytest.fail(str(exc), pytrace=False)
        override = None
        if rel is not None or abs is not None:
            override = Band(rel=float(rel or 0.0), abs=float(abs or 0.0), where="flop_count(rel=, abs=)")
        try:
            bands = read_bands(root)
        except BandsError as exc:
            pytest.fail(f"tolerance bands: {exc}", pytrace=False)
        rows, used = compare_documents(doc, golden, bands=bands, override=override)
        if rows:
            context = [f"bands: " + "; ".join(f"{k} {b.describe()}" for k, b in used.items() if b.rel or b.abs)
                       if any(b.rel or b.abs for b in used.values()) else "bands: exact",
                       *environment_diff(doc, golden)]
            pytest.fail(format_mismatch(f"{result.model}: FLOP counts differ from the golden "
                                        f"({len(rows)} field(s); FLOPs = 2 x MACs)", rows, path=Path(shown),
                                        regenerate=regenerate, context=context), pytrace=False)
        return result


def _show(path: Path, config: pytest.Config) -> str:
    try:
        return str(path.relative_to(config.rootpath))
    except ValueError:
        return str(path)


@pytest.fixture
def flop_count(request: pytest.FixtureRequest) -> FlopCount:
    """Count a model with every counter and assert the counts against its golden (see the module)."""
    return FlopCount(request)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Say which flop_count goldens this run wrote.
    https://docs.pytest.org/en/stable/reference/reference.html#pytest.hookspec.pytest_terminal_summary"""
    record = config.stash.get(_WRITTEN, None)
    if not record or not (record["written"] or record["unchanged"]):
        return
    terminalreporter.write_sep("-", "flop_count goldens")
    for path in record["written"]:
        terminalreporter.write_line(f"written: {path}")
    if record["unchanged"]:
        terminalreporter.write_line(f"{len(record['unchanged'])} unchanged")
