"""Root conftest: pytest's ``pytester`` (used by tests/plugin/ to run the plugin end to end), and the
harness plugin when harness is not installed (installed, it loads through its pytest11 entry point)."""

from importlib.metadata import entry_points

pytest_plugins = ["pytester"]
if not any(ep.value == "harness.plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins.append("harness.plugin")


#: Test modules that read the engine's memoised counts of one page in one mode (the session's
#: ``engine`` fixture): under xdist they run in the worker that measures that page's count facts.
SHARES_MEASUREMENTS = {
    "tests/test_counters_ocr2.py": ("ocr2", "gundam", "letter"),
    "tests/test_bytes.py": ("ocr2", "gundam", "letter"),
    "tests/test_report.py": ("ocr2", "small", "letter"),
}


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` (the project default), with the suite's count facts split by the page
    and mode they are measured on (the stages of one page share its upstream outputs, so one worker
    measures them) and the modules of SHARES_MEASUREMENTS joined to theirs: nothing is measured
    twice, and the suite's half of the work spreads over the workers."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    from harness.selection import selection_from_config
    from harness.suite import count_cases

    def chain(target, mode, page):
        return f"{target}-{mode}-{page}"

    facts = {c.id: chain(c.target, *c.first) for c in count_cases(selection_from_config(config))[0]}
    shares = {module: chain(*where) for module, where in SHARES_MEASUREMENTS.items()}

    class SharedMeasurementScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module, _, name = nodeid.partition("::")
            if module.endswith("tests/test_suite.py") and name.startswith("test_count["):
                return facts.get(name[len("test_count["):-1], module)
            return shares.get(module, module)

    return SharedMeasurementScheduling(config, log)
