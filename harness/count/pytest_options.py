"""The ``flop_count`` fixture's options, for a project that opts in to them.

``pytest_plugins = ["harness.count.pytest_options"]`` (or ``-p harness.count.pytest_options``) adds
``--flop-count-update-golden``, ``--flop-count-golden-dir`` and the ini option
``flop_count_golden_dir``; the fixture itself adds none (docs/count.md).
"""

from __future__ import annotations

import pytest

#: How a project names this plugin to opt in to it.
OPTIONS_PLUGIN = "harness.count.pytest_options"
UPDATE_OPTION = "--flop-count-update-golden"
INI_GOLDEN_DIR = "flop_count_golden_dir"


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``flop_count`` group. https://docs.pytest.org/en/stable/reference/reference.html#pytest.hookspec.pytest_addoption"""
    group = parser.getgroup("flop_count", "harness flop_count fixture (FLOP-count goldens of your models)")
    group.addoption(UPDATE_OPTION, action="store_true", dest="flop_count_update_golden", default=False,
                    help="write the flop_count goldens of the tests that run (unchanged files are not "
                         "touched; nothing is deleted)")
    group.addoption("--flop-count-golden-dir", action="store", dest="flop_count_golden_dir", default=None,
                    metavar="DIR", help="golden root of the flop_count fixture: goldens and bands in its "
                                        "flop_count/ folder (default: the ini option, else <rootdir>/golden)")
    parser.addini(INI_GOLDEN_DIR, "golden root of the flop_count fixture: goldens and bands in its "
                  "flop_count/ folder (default: <rootdir>/golden); relative to the rootdir", default="")
