"""Root conftest: registers the harness pytest plugin (options, markers, golden fixtures) and
pytest's ``pytester`` (used by tests/plugin/ to run the plugin end to end)."""

pytest_plugins = ["harness.plugin", "pytester"]
