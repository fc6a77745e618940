"""Helpers for the plugin's own tests: a fake suite run end to end with ``pytester``.

The fake counter reads its numbers from ``values.json`` next to the test file, so a test can
"change the model" by rewriting that file and watch the golden workflow react.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FAKE_SUITE = '''
import json
import pathlib

import pytest

VALUES = pathlib.Path(__file__).with_name("values.json")
PAGES = ("letter", "grid-1")
STAGES = ("sam", "prefill")


def fake_count(stage):
    """A fake counter: FLOPs per stage from values.json (FLOPs = 2 x MACs, here 'flop')."""
    values = json.loads(VALUES.read_text())
    flops = values[stage]
    by_op = {"aten.mm": flops}
    by_op.update(values.get("extra_ops", {}))
    return {"raw": flops, "convention": "flop", "flops": flops, "by_op": by_op,
            "unknown_ops": values.get("unknown_ops", {}), "variant": "patched",
            "version": "0.0"}


def _params():
    for page in PAGES:
        for stage in STAGES:
            key = f"fake-base-{page}-{stage}-torch"
            yield pytest.param(page, stage, id=key, marks=pytest.mark.golden(key))


@pytest.mark.parametrize("page, stage", list(_params()))
def test_stage(page, stage, golden):
    golden.check(fake_count(stage), layout={"views": [[1024, 1]], "tokens": 273},
                 environment={"dtype": "float32"})
'''

DEFAULT_VALUES = {"sam": 1000, "prefill": 2_000_000}


class FakeSuite:
    """A temporary project with the harness plugin and a fake two-page, two-stage suite."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        pytester.makeconftest('pytest_plugins = ["harness.plugin"]\n')
        pytester.makeini("[pytest]\naddopts = -p no:cacheprovider -p no:hypothesispytest -p no:benchmark -p no:anyio\n")
        self.test_file = pytester.makepyfile(test_fake=FAKE_SUITE)
        self.golden_dir = pytester.path / "golden"
        self.set_values(**DEFAULT_VALUES)

    def set_values(self, **values: object) -> None:
        """Rewrite what the fake counter measures."""
        (self.pytester.path / "values.json").write_text(json.dumps(values))

    def golden(self, page: str = "letter") -> Path:
        """The golden file of one page."""
        return self.golden_dir / "fake" / "base" / f"{page}.json"

    def run(self, *args: str) -> pytest.RunResult:
        """Run the inner pytest in-process."""
        return self.pytester.runpytest(*args)

    def run_subprocess(self, *args: str) -> pytest.RunResult:
        """Run the inner pytest in a fresh interpreter (for environment-sensitive checks)."""
        return self.pytester.runpytest_subprocess(*args)


@pytest.fixture
def fake_suite(pytester: pytest.Pytester) -> FakeSuite:
    """The fake suite in a temporary directory."""
    return FakeSuite(pytester)


def literal(pattern: str) -> str:
    """Escape ``[`` for ``fnmatch_lines`` (test ids contain brackets)."""
    return pattern.replace("[", "[[]")
