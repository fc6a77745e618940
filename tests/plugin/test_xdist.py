"""Under pytest-xdist the controller merges the workers' records and is the only writer; a crashed
worker makes the run incomplete: nothing is deleted and every golden stays valid."""

from __future__ import annotations

import shutil

import pytest
from conftest import GOLDEN_FILES, N_TESTS, UNUSED


def test_xdist_update_and_prune_are_byte_identical_to_a_serial_update(unused):
    """The controller merges the workers' records into one write per file, and sees every
    outcome: a complete -n 2 run prunes, and the result is what a serial update makes."""
    for path in (unused.count("sam", "g1024"), unused.count("prefill", "L273"), unused.layout()):
        path.unlink()
    result = unused.run("-n", "2", "--update-golden", "--prune-golden")
    result.assert_outcomes(passed=N_TESTS)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["3 golden file(s) written, 1 unchanged", "*", "*", "*",
                                 "1 unused golden(s) pruned", "  pruned: count:fake-prefill-*-L999"])
    merged = unused.snapshot()
    assert sorted(merged) == GOLDEN_FILES

    shutil.rmtree(unused.golden_dir)
    unused.update()
    assert unused.snapshot() == merged


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
    # each golden is the old one or the new one, whole: the crashed worker's records are lost
    # (they reach the controller only when a worker finishes), the other worker's are written
    assert docs["fake/count/sam/g1024.json"]["counters"]["torch"]["raw"] in (1000, 77)
    assert docs["fake/count/prefill/L300.json"]["counters"]["torch"]["raw"] in (2_200_000, 88)
    assert docs["fake/count/prefill/L273.json"]["counters"]["thop"]["raw"] == 1_000_000
