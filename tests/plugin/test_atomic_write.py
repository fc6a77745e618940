"""--update-golden writes atomically: a crash mid-write leaves the old golden intact."""

from __future__ import annotations

import os

import pytest

from harness.golden import write_atomic


def _temp_files(directory):
    return sorted(p.name for p in directory.rglob("*.tmp"))


def test_failed_write_keeps_the_old_golden_and_fails_the_run(fake_suite, monkeypatch):
    fake_suite.run("--update-golden")
    before = fake_suite.golden("letter").read_bytes()
    fake_suite.set_values(sam=1, prefill=2)

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    result = fake_suite.run("--update-golden")
    monkeypatch.undo()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["ERROR: could not write */golden/fake/base/*.json: [[]Errno 28[]] No space left on device"])
    assert fake_suite.golden("letter").read_bytes() == before
    assert _temp_files(fake_suite.golden_dir) == []


def test_hard_crash_mid_write_keeps_the_old_golden(fake_suite):
    """The process dies (os._exit) after the new bytes hit the temporary file, before the rename."""
    fake_suite.run("--update-golden")
    before = fake_suite.golden("letter").read_bytes()
    fake_suite.set_values(sam=1, prefill=2)
    fake_suite.pytester.makeconftest('''
import os

pytest_plugins = ["harness.plugin"]


def pytest_configure(config):
    def die(fd):            # the only fsync of the run is the golden write at the end
        os._exit(3)
    os.fsync = die
''')
    result = fake_suite.run_subprocess("--update-golden")
    assert result.ret == 3
    assert fake_suite.golden("letter").read_bytes() == before
    assert fake_suite.golden("grid-1").exists()
    assert len(_temp_files(fake_suite.golden_dir)) == 1, "the crash left its temporary file behind"

    # the leftover is never read as a golden, and the next update removes it
    fake_suite.pytester.makeconftest('pytest_plugins = ["harness.plugin"]\n')
    fake_suite.set_values(sam=1000, prefill=2_000_000)
    fake_suite.run().assert_outcomes(passed=4)
    fake_suite.run("--update-golden").assert_outcomes(passed=4)
    assert _temp_files(fake_suite.golden_dir) == []


def test_write_atomic_unit(tmp_path):
    path = tmp_path / "a" / "b.json"
    assert write_atomic(path, "one\n") is True
    assert write_atomic(path, "one\n") is False        # unchanged: not touched
    assert write_atomic(path, "two\n") is True
    assert path.read_text() == "two\n"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert _temp_files(tmp_path) == []
