"""--golden-dir and the ini option harness_golden_dir: goldens and tolerances.toml live elsewhere;
the failure message and the regenerate command name the directory."""

from __future__ import annotations

import os
import shlex

import pytest
from conftest import COUNT_IDS, GOLDEN_FILES, N_TESTS, literal


def test_golden_dir_option(fake):
    fake.run("--golden-dir", "snapshots", "--update-golden").assert_outcomes(passed=N_TESTS)
    assert sorted(p.relative_to(fake.path / "snapshots").as_posix()
                  for p in (fake.path / "snapshots").rglob("*.json")) == GOLDEN_FILES
    assert not fake.golden_dir.exists()
    fake.run("--golden-dir", "snapshots").assert_outcomes(passed=N_TESTS)
    fake.run().assert_outcomes(failed=N_TESTS)           # the default directory has no goldens

    fake.set_flops(sam_g1024=1)
    result = fake.run("--golden-dir", "snapshots", "-k", "sam")
    result.stdout.fnmatch_lines([
        "golden: snapshots/fake/count/sam/g1024.json",
        "*",
        "*",
        "*",
        "*",
        "*",
        "*",
        "If the change is deliberate, regenerate this golden with:",
        literal(f"  pytest --golden-dir=snapshots --update-golden '{COUNT_IDS[0]}'")])


def test_golden_dir_tolerances_come_from_that_directory(fake):
    fake.run("--golden-dir", "snapshots", "--update-golden")
    (fake.path / "snapshots" / "tolerances.toml").write_text('schema = 1\n[regress.sam.torch]\nrel = 0.5\n')
    fake.set_flops(sam_g1024=1400)
    fake.run("--golden-dir", "snapshots").assert_outcomes(passed=N_TESTS)


def test_absolute_golden_dir_outside_the_project(fake, tmp_path_factory):
    """The printed command is exact: run as printed, it regenerates that golden and nothing else.

    It says ``--golden-dir=DIR`` in one word: given as two words, an existing DIR is read by
    pytest as a test path when it looks for the rootdir (without a test path on the command line,
    pytest then runs under another rootdir, without the project's configuration)."""
    outside = tmp_path_factory.mktemp("elsewhere") / "goldens dir"
    fake.run(f"--golden-dir={outside}", "--update-golden").assert_outcomes(passed=N_TESTS)
    assert (outside / "fake" / "count" / "sam" / "g1024.json").exists()
    fake.set_flops(sam_g1024=1)
    result = fake.run(f"--golden-dir={outside}")
    result.assert_outcomes(passed=N_TESTS - 1, failed=1)
    command = f"  pytest '--golden-dir={outside}' --update-golden '{COUNT_IDS[0]}'"
    result.stdout.fnmatch_lines([f"golden: {outside}/fake/count/sam/g1024.json", literal(command)])

    words = shlex.split(command)
    assert words[0] == "pytest"
    result = fake.run(*words[1:])
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["1 golden file(s) written, 0 unchanged"])
    fake.run(f"--golden-dir={outside}").assert_outcomes(passed=N_TESTS)


def test_ini_option(fake):
    fake.pytester.makeini("[pytest]\naddopts = -p no:cacheprovider -p no:hypothesispytest -p no:benchmark "
                          "-p no:anyio\nharness_golden_dir = tests/goldens\n")
    fake.run("--update-golden").assert_outcomes(passed=N_TESTS)
    assert (fake.path / "tests" / "goldens" / "fake" / "layout" / "base.json").exists()
    assert not fake.golden_dir.exists()
    fake.set_flops(sam_g1024=1)
    result = fake.run("-k", "sam")
    result.stdout.fnmatch_lines(["golden: tests/goldens/fake/count/sam/g1024.json",
                                 literal(f"  pytest --update-golden '{COUNT_IDS[0]}'")])
    # the option wins over the ini value
    fake.run("--golden-dir", "other", "--update-golden").assert_outcomes(passed=N_TESTS)
    assert (fake.path / "other" / "fake" / "count" / "sam" / "g1024.json").exists()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc (a directory no one can create in)")
def test_unwritable_golden_dir_is_a_usage_error(fake):
    result = fake.run("--golden-dir=/proc/harness-goldens", "--update-golden")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --update-golden/--prune-golden: the golden directory /proc/harness-goldens "
                                 "is not writable (No such file or directory); pass a writable --golden-dir"])
    # a run that only reads does not need to write there (and fails on the missing goldens instead)
    fake.run("--golden-dir=/proc/harness-goldens").assert_outcomes(failed=N_TESTS)


def test_golden_dir_through_a_file_is_a_usage_error(fake):
    result = fake.run("--golden-dir=values.json/goldens")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: tolerance bands: */values.json/goldens/tolerances.toml cannot be read: "
                                 "[[]Errno 20[]] Not a directory*"])
