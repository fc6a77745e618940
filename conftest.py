"""Root conftest: pytest's ``pytester`` (used by tests/plugin/ to run the plugin end to end), and the
harness plugin when harness is not installed (installed, it loads through its pytest11 entry point)."""

from importlib.metadata import entry_points

pytest_plugins = ["pytester"]
if not any(ep.value == "harness.plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins.append("harness.plugin")
