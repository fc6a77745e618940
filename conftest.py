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


#: Test modules that read the engine's memoised counts of one page in one mode (the session's
#: ``engine`` fixture): under xdist they run in the worker that measures that page's count facts.
SHARES_MEASUREMENTS = {
    "tests/test_counters_ocr2.py": ("ocr2", "gundam", "letter"),
    "tests/test_bytes.py": ("ocr2", "gundam", "letter"),
    "tests/test_report.py": ("ocr2", "small", "letter"),
}
#: Tests parametrized by mode that read the Letter page's counts in that mode: each runs where the
#: keys of that page and mode are measured (``<nodeid>[<mode>]``).
SHARES_BY_MODE = {
    "tests/test_bytes.py::test_ocr2_letter_bytes_match_the_counter": ("ocr2", "letter"),
}


def pytest_configure(config):
    """With ``-p no:xdist``, the ``xdist_group`` marks of the suite are known markers all the same
    (strict markers are on)."""
    if not config.pluginmanager.hasplugin("xdist"):
        config.addinivalue_line("markers", "xdist_group(name): xdist runs the group in one worker")


@pytest.hookimpl(optionalhook=True)       # absent with -p no:xdist
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` (the project default), with the suite's count facts split by the page
    and mode they are measured on (the stages of one page share its upstream outputs, so one worker
    measures them) and the modules of SHARES_MEASUREMENTS (the tests of SHARES_BY_MODE, by their
    mode) joined to theirs: nothing is measured twice, and the suite's half of the work spreads over
    the workers."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    from harness.inputs.selection import selection_from_config, target_stages
    from harness.run.plan import count_cases, shape_index

    def chain(target, mode, page):
        return f"{target}-{mode}-{page}"

    cases = count_cases(selection_from_config(config))[0]
    facts = {c.id: chain(c.target, *c.first) for c in cases}
    shares = {module: chain(*where) for module, where in SHARES_MEASUREMENTS.items()}

    def measured_with(target, mode, page):
        """The chain that measures the first stage's key of ``page`` in ``mode`` (its first page's)."""
        first = target_stages()[target][0]
        for (stage, _name), (_key, pages) in shape_index(target).items():
            if stage == first and (mode, page) in pages:
                return chain(target, *pages[0])
        return None

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
            module, _, name = nodeid.partition("::")
            if module.endswith("tests/test_suite.py") and name.startswith("test_count["):
                return facts.get(name[len("test_count["):-1], module)
            base, _, param = nodeid.partition("[")
            if base in SHARES_BY_MODE and param:
                target, page = SHARES_BY_MODE[base]
                return measured_with(target, param[:-1], page) or shares.get(module, module)
            return shares.get(module, module)

    return SharedMeasurementScheduling(config, log)
