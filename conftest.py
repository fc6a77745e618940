"""Root conftest: this repository's pytest configuration. It switches on the harness suite's plugin
(``harness.pytest.plugin``: its options, markers, goldens; installing harness switches on nothing), the
``flop_count`` fixture's options (``harness.count.pytest_options``) and pytest's ``pytester``
(tests/plugin/ runs the plugin end to end); and it spreads the suite over xdist workers unless the
command line says otherwise."""

import pytest

pytest_plugins = ["pytester", "harness.pytest.plugin", "harness.count.pytest_options"]


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """The suite's default distribution, ``-n auto --dist loadfile`` (the workers: the plugin's
    ``pytest_xdist_auto_num_workers``), where xdist is loaded (not ``-p no:xdist``): ``-n`` given
    alone also distributes by file; ``-n 0``, ``--dist`` and ``--tx`` are the command line's.
    Set here rather than in ``addopts``, so that ``-p no:xdist`` still parses; runs before xdist's
    own ``pytest_cmdline_main``, which resolves ``auto``."""
    option = config.option
    if (hasattr(config, "workerinput") or not config.pluginmanager.hasplugin("xdist") or getattr(option, "dist", "no") != "no"
            or getattr(option, "distload", False) or getattr(option, "tx", None)):
        return
    if option.numprocesses is None:
        option.numprocesses = "auto"
    option.dist = "loadfile"


#: config.stash: the folder through which xdist workers tell the controller which tests carry a
#: ``measures`` mark (the controller sees node ids only); made by this conftest, removed at the end.
_READERS_DIR = pytest.StashKey[str]()


def pytest_configure(config):
    """The ``measures`` mark; with ``-p no:xdist``, the ``xdist_group`` marks of the suite are known
    markers all the same (strict markers are on). Under ``--dist loadfile`` the controller makes the
    folder the workers report the ``measures`` marks in."""
    config.addinivalue_line(
        "markers", "measures(target, mode, *pages): the test reads the session engine's memoised counts of "
        "those pages in that mode; under xdist it runs in the worker that measures their count facts")
    if not config.pluginmanager.hasplugin("xdist"):
        config.addinivalue_line("markers", "xdist_group(name): xdist runs the group in one worker")
    elif not hasattr(config, "workerinput") and config.getvalue("dist") == "loadfile":
        import tempfile

        config.stash[_READERS_DIR] = tempfile.mkdtemp(prefix="harness-readers-")


def pytest_unconfigure(config):
    folder = config.stash.get(_READERS_DIR, None)
    if folder is not None:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)      # made by pytest_configure above


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """Controller: each worker learns where to report its ``measures`` marks."""
    folder = node.config.stash.get(_READERS_DIR, None)
    if folder is not None:
        node.workerinput["harness_readers"] = folder


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Worker: write ``{node id: [target, mode, *pages]}`` of the tests marked ``measures`` for the
    controller's scheduler (before the worker reports its collection, hence before scheduling)."""
    folder = getattr(config, "workerinput", {}).get("harness_readers")
    if folder is None:
        return
    import json
    import os

    readers = {item.nodeid: list(mark.args) for item in items
               for mark in [item.get_closest_marker("measures")] if mark is not None}
    path = os.path.join(folder, f"{config.workerinput['workerid']}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(readers, f)
    os.replace(path + ".tmp", path)


def _readers(config) -> dict[str, tuple[str, ...]]:
    """The ``measures`` marks the workers reported (none without the folder: module scopes)."""
    import json
    import os

    folder = config.stash.get(_READERS_DIR, None)
    out: dict[str, tuple[str, ...]] = {}
    if folder is None:
        return out
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                out.update({nodeid: tuple(args) for nodeid, args in json.load(f).items()})
    return out


@pytest.hookimpl(optionalhook=True)       # absent with -p no:xdist
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` (the project default), with the suite's count facts and the tests marked
    ``measures`` grouped by the plan's units of work (:func:`harness.run.plan.suite_scopes`: a page
    chain's stages share its upstream outputs, so one worker measures them, and the tests reading
    them run there): nothing is measured twice, and the work spreads over the workers."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    from harness.inputs.selection import selection_from_config
    from harness.run.plan import count_cases, suite_scopes

    cases = count_cases(selection_from_config(config))[0]
    scopes: dict[str, dict[str, str]] = {}

    def scope_of(nodeid: str) -> str | None:
        if not scopes:      # first call: in schedule(), once every worker has collected
            scopes["facts"], scopes["readers"] = suite_scopes(cases, _readers(config))
        module, _, name = nodeid.partition("::")
        if module.endswith("tests/test_suite.py") and name.startswith("test_count["):
            return scopes["facts"].get(name[len("test_count["):-1])
        return scopes["readers"].get(nodeid)

    class SharedMeasurementScheduling(LoadScopeScheduling):
        def remove_node(self, node):
            """A worker is gone (finished or crashed). xdist 3.8's LoadScopeScheduling puts a crashed
            worker's whole work unit back in the queue, the test it crashed in included: the
            replacement worker runs that test again, and a deterministic crash (out of memory)
            repeats on every new worker until --max-worker-restart (4 x workers) is spent. Here, as
            --dist load does, the crashed test is reported (returned) and not queued again; the
            unit's other pending tests are."""
            workload = self.assigned_work.pop(node)
            if not self._pending_of(workload):
                return None
            crashed = next(nodeid for unit in workload.values() for nodeid, done in unit.items() if not done)
            for scope, unit in workload.items():
                if crashed in unit:
                    unit[crashed] = True
                if not all(unit.values()):
                    self.workqueue[scope] = unit
            for other in self.assigned_work:
                self._reschedule(other)
            return crashed

        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid) or nodeid.partition("::")[0]

    return SharedMeasurementScheduling(config, log)
