"""The suite's pytest plugin: options, markers, gating, fixtures and hooks."""
