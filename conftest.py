"""Root conftest: registers the harness pytest plugin (options, markers, golden fixtures)."""

pytest_plugins = ["harness.plugin"]
