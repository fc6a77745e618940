"""Two writing runs on one golden directory: the second fails fast (usage error, exit 4) naming
the first, touches nothing, and the first completes and writes. The lock dies with its holder."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import N_TESTS


def _wait_for(path, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace")
            pytest.fail(f"the first run ended (exit {proc.returncode}) before blocking:\n{out}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the first run never reached its blocking test")
        time.sleep(0.05)


def test_second_update_run_fails_fast_and_the_first_completes(made):
    made.set_flops(sam_g1024=4321)
    made.at(prefill_torch_L273="block")                      # after sam-torch-g1024 recorded
    first = made.pytester.popen([sys.executable, "-m", "pytest", "--update-golden"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_for(made.path / "blocked", first)
        before = made.snapshot()

        for flag in ("--update-golden", "--prune-golden"):
            second = made.run(flag)
            assert second.ret == pytest.ExitCode.USAGE_ERROR
            second.stderr.fnmatch_lines([
                f"ERROR: the golden directory {made.golden_dir} is being updated by another run "
                f"(pid {first.pid}, since *: --update-golden). Wait for it to finish, then run again; two runs "
                "that write goldens at once could leave one of them stale."])
            second.stdout.no_fnmatch_line("*passed*")
        assert made.snapshot() == before

        # a run that only reads is not blocked
        made.run("-k", "prefill").assert_outcomes(passed=3, deselected=N_TESTS - 3)
    finally:
        (made.path / "release").touch()
        out = first.communicate(timeout=120)[0].decode(errors="replace")
    assert first.returncode == 0, out
    assert "1 golden file(s) written, 3 unchanged" in out, out
    docs = made.assert_all_valid()
    assert docs["fake/count/sam/g1024.json"]["counters"]["torch"]["raw"] == 4321

    # the lock went with the first run
    made.at()
    made.run("--update-golden").stdout.fnmatch_lines(["0 golden file(s) written, 4 unchanged"])


def test_lock_is_released_after_an_interrupted_update(made):
    made.at(sam_torch_g1024="interrupt")
    assert made.run("--update-golden").ret == pytest.ExitCode.INTERRUPTED
    made.at()
    made.run("--update-golden").assert_outcomes(passed=N_TESTS)


def test_lock_is_released_after_a_failed_update(made):
    made.at(sam_torch_g1024="fail")
    made.run("--update-golden", "-x").assert_outcomes(passed=2, failed=1)
    made.at()
    made.run("--update-golden").assert_outcomes(passed=N_TESTS)
