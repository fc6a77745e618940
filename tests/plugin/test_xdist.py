"""Under pytest-xdist the controller merges the workers' records and is the only writer; a crashed
worker makes the run incomplete: nothing is deleted and every golden stays valid."""

from __future__ import annotations

import shutil

import pytest
from conftest import N_TESTS, UNUSED


def test_xdist_update_is_byte_identical_to_a_serial_update(made):
    serial = made.snapshot()
    shutil.rmtree(made.golden_dir)
    result = made.run("-n", "2", "--update-golden")
    result.assert_outcomes(passed=N_TESTS)
    result.stdout.fnmatch_lines(["4 golden file(s) written, 0 unchanged"])
    assert made.snapshot() == serial


def test_crashed_worker_deletes_nothing_and_leaves_valid_goldens(unused):
    unused.set_flops(sam_g1024=77, prefill_L300=88)
    unused.at(prefill_thop_L273="exit")
    result = unused.run("-n", "2", "--update-golden", "--prune-golden")
    result.stdout.fnmatch_lines(["*worker*crashed*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "3 unused golden(s) (the suite definition no longer expects them)*", *sorted(UNUSED),
        "PRUNE REFUSED: nothing pruned: not a complete run (an xdist worker crashed)"])
    after = unused.snapshot()
    assert set(after) == set(unused.unused_snapshot), "nothing deleted, nothing left behind"
    docs = unused.assert_all_valid()
    assert docs["fake/count/sam/g1024.json"]["counters"]["fvcore"], "the unused entry is kept"
    assert sorted(docs["fake/layout/base.json"]["pages"]) == ["grid-1", "letter", "old"]
    # what the surviving workers recorded is written whole
    assert docs["fake/count/sam/g1024.json"]["counters"]["torch"]["raw"] == 77
    assert docs["fake/count/prefill/L300.json"]["counters"]["torch"]["raw"] == 88
