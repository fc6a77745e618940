"""pytest's own habits work with this repository's configuration (its conftest.py and addopts):
``--lf``, ``--ff``, ``--sw``, ``-p no:xdist``, ``-n 0``; and ``--update-golden --lf`` writes only
the goldens of the tests that ran."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

HABITS = '''
import pathlib

HERE = pathlib.Path(__file__).parent


def test_a():
    pass


def test_b():
    assert not (HERE / "fail_b").exists(), "b fails while fail_b exists"


def test_c():
    pass
'''


@pytest.fixture
def repo_like(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project with this repository's conftest.py and addopts, three tests (b fails on demand)."""
    addopts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    pytester.makeconftest((REPO / "conftest.py").read_text())
    pytester.makeini(f"[pytest]\naddopts = {addopts} -p no:randomly\n")
    pytester.makepyfile(test_habits=HABITS)
    (pytester.path / "fail_b").write_text("")
    return pytester


def test_last_failed_failed_first_stepwise_and_no_xdist(repo_like: pytest.Pytester):
    run = repo_like.runpytest          # in process (torch is imported here already); xdist's workers are not
    run("-n", "0").assert_outcomes(passed=2, failed=1)

    last_failed = run("--lf")                                   # the default: -n auto, xdist workers
    last_failed.assert_outcomes(failed=1)                       # one test ran: the one that failed
    last_failed.stdout.fnmatch_lines(["*workers [[]1 item]*"])

    failed_first = run("--ff", "-n", "0", "-v")
    failed_first.assert_outcomes(passed=2, failed=1)
    assert failed_first.stdout.str().index("test_b") < failed_first.stdout.str().index("test_a")

    run("--sw", "-p", "no:xdist").assert_outcomes(passed=1, failed=1)      # stops at b
    (repo_like.path / "fail_b").unlink()
    stepwise = run("--sw", "-p", "no:xdist")                    # resumes at b, which now passes
    stepwise.assert_outcomes(passed=2, deselected=1)


def test_update_golden_with_last_failed_writes_only_what_ran(made):
    """Two facts change, one test ran and failed before: ``--update-golden --lf`` rewrites only its
    golden; the other changed fact still fails against its untouched golden."""
    made.pytester.makeini("[pytest]\naddopts = -p no:hypothesispytest -p no:benchmark -p no:anyio\n")
    before = made.snapshot()
    made.set_flops(sam_g1024=1010)
    made.run().assert_outcomes(passed=5, failed=1)
    made.set_flops(prefill_L300=2_300_000)
    result = made.run("--update-golden", "--lf")
    result.assert_outcomes(passed=1)                            # collected 1 item: the rest not even collected
    after = made.snapshot()
    changed = sorted(name for name in after if after[name] != before[name])
    assert changed == ["fake/count/sam/g1024.json"]
    assert json.loads(after["fake/count/sam/g1024.json"])["counters"]["torch"]["flops"] == 1010
    made.run().assert_outcomes(passed=5, failed=1)              # L300 was not rewritten
