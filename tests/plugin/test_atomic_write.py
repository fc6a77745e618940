"""Golden writes are atomic: a failed or killed write leaves the old golden; the temporary files
a killed run leaves are swept by the next writing run (the lock holder), never by a reading run."""

from __future__ import annotations

import os

import pytest
from conftest import N_TESTS

from harness.golden import write_atomic

CRASH_PLUGIN = '''
import os


def pytest_configure(config):
    def die(fd):            # the only fsync of the run is the golden write at the end
        os._exit(3)
    os.fsync = die
'''


def _temp_files(directory):
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*.tmp"))


def test_failed_write_keeps_the_old_golden_and_fails_the_run(made, monkeypatch):
    before = made.snapshot()
    made.set_flops(sam_g1024=1)

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    result = made.run("--update-golden")
    monkeypatch.undo()
    result.assert_outcomes(passed=N_TESTS)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["ERROR: could not write golden/fake/count/sam/g1024.json: [[]Errno 28[]] "
                                 "No space left on device"])
    assert made.snapshot() == before
    assert _temp_files(made.golden_dir) == []


def test_killed_mid_write_keeps_the_old_golden_and_the_next_update_sweeps(made):
    """The process dies (os._exit) after the new bytes hit the temporary file, before the rename."""
    before = made.snapshot()
    made.set_flops(prefill_L273=2)
    made.pytester.makepyfile(crash_on_fsync=CRASH_PLUGIN)
    result = made.run_subprocess("-p", "crash_on_fsync", "--update-golden")
    assert result.ret == 3
    assert {k: v for k, v in made.snapshot().items() if not k.endswith(".tmp")} == before
    leftover = _temp_files(made.golden_dir)
    assert len(leftover) == 1 and leftover[0].startswith("fake/count/prefill/.L273.json."), leftover

    # the leftover is never read as a golden, nor removed by a run that does not write
    made.set_flops(prefill_L273=2_000_000)
    made.run().assert_outcomes(passed=N_TESTS)
    assert _temp_files(made.golden_dir) == leftover
    result = made.run("--update-golden")
    result.assert_outcomes(passed=N_TESTS)
    result.stdout.fnmatch_lines(["1 stale temporary file(s) of a killed run removed"])
    assert _temp_files(made.golden_dir) == []
    assert made.snapshot() == before


def test_stale_temporary_files_are_swept_by_an_update_run_only(made):
    stale = [made.golden_dir / "fake" / "count" / "sam" / ".g1024.json.k2j4h1x0.tmp",
             made.golden_dir / "fake" / "layout" / ".base.json.8f7e6d5c.tmp"]
    for path in stale:
        path.write_text('{"half": ')
    other = made.golden_dir / "fake" / "notes.tmp"          # not a golden temporary file: not ours
    other.write_text("keep me")
    made.run().assert_outcomes(passed=N_TESTS)
    assert all(p.exists() for p in stale)
    result = made.run("--update-golden")
    result.stdout.fnmatch_lines(["2 stale temporary file(s) of a killed run removed",
                                 "0 golden file(s) written, 4 unchanged"])
    assert not any(p.exists() for p in stale)
    assert other.read_text() == "keep me"


def test_write_atomic_unit(tmp_path):
    path = tmp_path / "a" / "b.json"
    assert write_atomic(path, "one\n") is True
    assert write_atomic(path, "one\n") is False        # unchanged: not touched
    assert write_atomic(path, "two\n") is True
    assert path.read_text() == "two\n"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert _temp_files(tmp_path) == []
