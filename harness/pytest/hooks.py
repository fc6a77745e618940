"""Hook specifications the harness pytest plugin adds (registered by ``pytest_addhooks``)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec(firstresult=True)
def pytest_harness_golden_definition(config: pytest.Config) -> Any:
    """The :class:`harness.golden.session.Expected` goldens of this project's suite definition
    (against which unused goldens are found and pruned); None: the harness suite's own."""
